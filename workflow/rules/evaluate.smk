# Evaluation: importance-weighted sample sets from every trained sampler, the papers' metrics
# against the MD test split, and the per-system tables.


rule sample_flow:
    input:
        model=f"{OUT}/models/{{system}}/{{method}}-{{arch}}-seed{{seed}}/model.pt",
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
        xml=f"{OUT}/systems/{{system}}/system.xml",
        spec=f"{OUT}/systems/{{system}}/spec.json",
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
    output:
        f"{OUT}/samples/{{system}}/{{method}}-{{arch}}-seed{{seed}}.parquet",
    params:
        settings=lookup(dpath="evaluation", within=config),
    threads: 1
    log:
        f"{OUT}/logs/sample_flow/{{system}}-{{method}}-{{arch}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Sampling the {wildcards.method}-{wildcards.arch} flow of {wildcards.system} (seed {wildcards.seed}) with exact log q"
    script:
        "../scripts/sample_flow.py"


rule sample_cnf:
    input:
        model=f"{OUT}/models/{{system}}/cnf-seed{{seed}}/model.pt",
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
        xml=f"{OUT}/systems/{{system}}/system.xml",
        spec=f"{OUT}/systems/{{system}}/spec.json",
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
    output:
        f"{OUT}/samples/{{system}}/cnf-seed{{seed}}.parquet",
    params:
        settings=lookup(dpath="evaluation", within=config),
    threads: 1
    log:
        f"{OUT}/logs/sample_cnf/{{system}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Sampling the CNF teacher of {wildcards.system} (seed {wildcards.seed}) with its exact log q"
    script:
        "../scripts/sample_cnf.py"


rule score_samples:
    input:
        unpack(score_inputs),
    output:
        metrics=f"{OUT}/metrics/{{system}}/{{model}}.parquet",
        resampled=f"{OUT}/metrics/{{system}}/{{model}}_resampled.parquet",
    params:
        settings=lookup(dpath="evaluation", within=config),
        fep=lookup(dpath="fep", within=config),
    threads: 1
    log:
        f"{OUT}/logs/score_samples/{{system}}-{{model}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Metrics of {wildcards.model} on {wildcards.system} (ESS, E-W1, E-W2, T-W2, chirality)"
    script:
        "../scripts/score_samples.py"


rule flow_table:
    input:
        lambda wc: expand(f"{OUT}/metrics/{wc.system}/{{model}}.parquet", model=flow_models(with_teacher=True)),
    output:
        table=f"{OUT}/tables/{{system}}_flows.parquet",
        markdown=f"{OUT}/tables/{{system}}_flows.md",
    params:
        tolerance=lookup(dpath="flows/invertibility/tolerance", within=config),
    log:
        f"{OUT}/logs/flow_table/{{system}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Table of the flows of {wildcards.system}: methods x metrics, mean and bootstrap interval over seeds"
    script:
        "../scripts/flow_table.py"


rule plot_flow_samples:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
        dihedrals=f"{OUT}/md/{{system}}/dihedrals.parquet",
        samples=lambda wc: expand(f"{OUT}/samples/{wc.system}/{{model}}.parquet", model=flow_models(first_seed=True)),
        resampled=lambda wc: expand(
            f"{OUT}/metrics/{wc.system}/{{model}}_resampled.parquet", model=flow_models(first_seed=True)
        ),
    output:
        report(
            figure_paths("flow_samples"),
            caption="../report/flow_samples.rst",
            category="Flows",
            subcategory="{system}",
        ),
    params:
        models=flow_models(first_seed=True),
        seed=FLOWS["seeds"][0] if FLOWS["seeds"] else None,
    log:
        f"{OUT}/logs/plot_flow_samples/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "MD vs flows of {wildcards.system}: energies and Ramachandran plots"
    script:
        "../scripts/plot_flow_samples.py"


rule tfep:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
        dihedrals=f"{OUT}/md/{{system}}/dihedrals.parquet",
        frame=f"{OUT}/models/{{system}}/frame.json",
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
        xml=f"{OUT}/systems/{{system}}/system.xml",
        spec=f"{OUT}/systems/{{system}}/spec.json",
    output:
        table=f"{OUT}/fep/{{system}}/tfep.parquet",
        work=f"{OUT}/fep/{{system}}/work.parquet",
        model=f"{OUT}/fep/{{system}}/map/model.pt",
        history=f"{OUT}/fep/{{system}}/map/history.parquet",
    params:
        fep=lookup(dpath="fep", within=config),
        flows=lookup(dpath="flows", within=config),
        checkpoint_dir=lambda wc: f"{OUT}/fep/{wc.system}/map/checkpoint",
    threads: 1
    log:
        f"{OUT}/logs/tfep/{{system}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Free energy between two states of {wildcards.system}: MD populations and targeted FEP with a RegFlow map"
    script:
        "../scripts/tfep.py"


rule plot_fep:
    input:
        table=f"{OUT}/fep/{{system}}/tfep.parquet",
        work=f"{OUT}/fep/{{system}}/work.parquet",
        metrics=lambda wc: expand(
            f"{OUT}/metrics/{wc.system}/{{model}}.parquet", model=flow_models(with_teacher=True)
        ),
    output:
        figures=report(
            figure_paths("fep"),
            caption="../report/fep.rst",
            category="Free energy",
            subcategory="{system}",
        ),
        table=f"{OUT}/tables/{{system}}_fep.md",
    params:
        fep=lookup(dpath="fep", within=config),
    log:
        f"{OUT}/logs/plot_fep/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "Free-energy estimates of {wildcards.system} (MD, reweighted flows, TFEP)"
    script:
        "../scripts/plot_fep.py"


rule summary_table:
    input:
        expand(f"{OUT}/tables/{{system}}_flows.parquet", system=FLOW_SYSTEMS),
    output:
        table=f"{OUT}/tables/summary_flows.parquet",
        markdown=f"{OUT}/tables/summary_flows.md",
    params:
        tolerance=lookup(dpath="flows/invertibility/tolerance", within=config),
    log:
        f"{OUT}/logs/summary_table/summary.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Summary of the flow tables across systems"
    script:
        "../scripts/summary_table.py"
