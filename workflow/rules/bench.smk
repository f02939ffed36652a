# Benchmarks compare engines, not experiments: they write to results/benchmarks/.
# Run with `snakemake --cores all bench_md` (not part of the default target).


rule bench_md:
    input:
        pdb=f"{OUT}/systems/{config['benchmark']['md_system']}/topology.pdb",
        xml=f"{OUT}/systems/{config['benchmark']['md_system']}/system.xml",
        spec=f"{OUT}/systems/{config['benchmark']['md_system']}/spec.json",
    output:
        table=f"{BENCH}/md.parquet",
        markdown=f"{BENCH}/md.md",
    params:
        bench=lookup(dpath="benchmark", within=config),
        md=lookup(dpath="md", within=config),
    # Snakemake caps threads at --cores, so the benchmark gets every core the run was given.
    threads: 1024
    log:
        f"{BENCH}/logs/bench_md.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Benchmark: MD stage vs plain OpenMM on every available platform, and the Parquet writer"
    script:
        "../scripts/bench_md.py"


rule bench_energy:
    output:
        table=f"{BENCH}/energy.parquet",
        markdown=f"{BENCH}/energy.md",
    params:
        bench=lookup(dpath="benchmark", within=config),
    # Snakemake caps threads at --cores, so the benchmark gets every core the run was given.
    threads: 1024
    log:
        f"{BENCH}/logs/bench_energy.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Benchmark: batched torch energies and forces vs OpenMM contexts"
    script:
        "../scripts/bench_energy.py"


rule bench_flows:
    output:
        table=f"{BENCH}/flows.parquet",
        markdown=f"{BENCH}/flows.md",
    params:
        bench=lookup(dpath="benchmark/flows", within=config),
    # Snakemake caps threads at --cores, so the benchmark gets every core the run was given.
    threads: 1024
    log:
        f"{BENCH}/logs/bench_flows.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Benchmark: sampling with exact log-densities (our flows vs zuko's NSF and the CNF), RegFlow vs MLE training"
    script:
        "../scripts/bench_flows.py"


rule bench_frames:
    input:
        frames=f"{OUT}/md/{config['benchmark']['frames']['system']}/frames.parquet",
        split=f"{OUT}/md/{config['benchmark']['frames']['system']}/split.parquet",
        pdb=f"{OUT}/systems/{config['benchmark']['frames']['system']}/topology.pdb",
        xml=f"{OUT}/systems/{config['benchmark']['frames']['system']}/system.xml",
        spec=f"{OUT}/systems/{config['benchmark']['frames']['system']}/spec.json",
    output:
        table=f"{BENCH}/frames.parquet",
        markdown=f"{BENCH}/frames.md",
    params:
        bench=lookup(dpath="benchmark/frames", within=config),
    threads: 1024
    log:
        f"{BENCH}/logs/bench_frames.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Benchmark: the flows' coordinate frames as Boltzmann generators (the same MLE flow in each)"
    script:
        "../scripts/bench_frames.py"


rule bench_ot_floor:
    input:
        frames=f"{OUT}/md/{config['benchmark']['ot_floor']['system']}/frames.parquet",
        split=f"{OUT}/md/{config['benchmark']['ot_floor']['system']}/split.parquet",
        frame=f"{OUT}/models/{config['benchmark']['ot_floor']['system']}/frame.json",
    output:
        table=f"{BENCH}/ot_floor.parquet",
        markdown=f"{BENCH}/ot_floor.md",
    params:
        bench=lookup(dpath="benchmark/ot_floor", within=config),
    log:
        f"{BENCH}/logs/bench_ot_floor.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Benchmark: the regression floor of batch-OT pairs against the OT batch size"
    script:
        "../scripts/bench_ot_floor.py"


rule bench_reflow:
    input:
        model=f"{OUT}/models/{config['benchmark']['reflow']['system']}/cnf-seed{config['couplings']['cnf']['seed']}/model.pt",
    output:
        table=f"{BENCH}/reflow.parquet",
        markdown=f"{BENCH}/reflow.md",
    params:
        bench=lookup(dpath="benchmark/reflow", within=config),
    threads: 1
    log:
        f"{BENCH}/logs/bench_reflow.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Benchmark: reflow-pair solvers, error against a tight solve and pairs per second"
    script:
        "../scripts/bench_reflow.py"


rule bench_teacher:
    input:
        frames=f"{OUT}/md/{config['benchmark']['teacher']['system']}/frames.parquet",
        split=f"{OUT}/md/{config['benchmark']['teacher']['system']}/split.parquet",
        frame=f"{OUT}/models/{config['benchmark']['teacher']['system']}/frame.json",
        pdb=f"{OUT}/systems/{config['benchmark']['teacher']['system']}/topology.pdb",
        xml=f"{OUT}/systems/{config['benchmark']['teacher']['system']}/system.xml",
        spec=f"{OUT}/systems/{config['benchmark']['teacher']['system']}/spec.json",
    output:
        table=f"{BENCH}/teacher.parquet",
        markdown=f"{BENCH}/teacher.md",
        figure=f"{BENCH}/teacher.png",
    params:
        bench=lookup(dpath="benchmark/teacher", within=config),
        cnf=lookup(dpath="couplings/cnf", within=config),
    threads: 1
    log:
        f"{BENCH}/logs/bench_teacher.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Benchmark: the CNF teacher's quality against its training steps and prior pairing"
    script:
        "../scripts/bench_teacher.py"
