# SGDS and its baselines (TB, TB + buffer, PIS) on synthetic targets: training, the paper's metrics,
# the table and the figures. Particle targets (lj13, lj55, dw4) take their reference samples from
# rule reference_samples, peptides (al2, al3, al4) from their MD frames.


rule train_sgds:
    input:
        reference=sgds_reference,
    output:
        model=f"{OUT}/sgds/{{target}}/{{sgds_method}}-seed{{seed}}/model.pt",
        history=f"{OUT}/sgds/{{target}}/{{sgds_method}}-seed{{seed}}/history.parquet",
    params:
        sgds=lookup(dpath="sgds", within=config),
        checkpoint_dir=lambda wc: f"{OUT}/sgds/{wc.target}/{wc.sgds_method}-seed{wc.seed}/checkpoint",
    threads: 1
    log:
        f"{OUT}/logs/train_sgds/{{target}}-{{sgds_method}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Training a diffusion sampler by {wildcards.sgds_method} on {wildcards.target} (seed {wildcards.seed})"
    script:
        "../scripts/train_sgds.py"


rule evaluate_sgds:
    input:
        model=f"{OUT}/sgds/{{target}}/{{sgds_method}}-seed{{seed}}/model.pt",
        reference=sgds_reference,
    output:
        metrics=f"{OUT}/sgds/{{target}}/{{sgds_method}}-seed{{seed}}/metrics.parquet",
        samples=f"{OUT}/sgds/{{target}}/{{sgds_method}}-seed{{seed}}/samples.parquet",
    params:
        sgds=lookup(dpath="sgds", within=config),
    threads: 1
    log:
        f"{OUT}/logs/evaluate_sgds/{{target}}-{{sgds_method}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Metrics of the {wildcards.sgds_method} sampler of {wildcards.target} (seed {wildcards.seed})"
    script:
        "../scripts/evaluate_sgds.py"


rule sgds_tables:
    input:
        metrics=lambda wc: [f"{OUT}/sgds/{run}/metrics.parquet" for run in sgds_runs()],
    output:
        table=f"{OUT}/tables/sgds.md",
        table_parquet=f"{OUT}/tables/sgds.parquet",
    log:
        f"{OUT}/logs/sgds_tables.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "SGDS table (ELBO, EUBO, gap, log Z, W2, energy calls)"
    script:
        "../scripts/sgds_tables.py"


rule plot_sgds:
    input:
        histories=lambda wc: [f"{OUT}/sgds/{run}/history.parquet" for run in sgds_runs()],
        samples=lambda wc: [f"{OUT}/sgds/{run}/samples.parquet" for run in sgds_runs()],
    output:
        gap=[f"{OUT}/figures/sgds_gap.{ext}" for ext in FIG_FORMATS],
        samples=[f"{OUT}/figures/sgds_samples.{ext}" for ext in FIG_FORMATS],
    params:
        runs=lambda wc: sgds_runs(),
        n_reference=lookup(dpath="sgds/evaluation/n_reference", within=config),
    log:
        f"{OUT}/logs/plot_sgds.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "SGDS figures (gap against energy calls, samples in 2-D projections)"
    script:
        "../scripts/plot_sgds.py"


rule plot_sgds_particles:
    input:
        samples=lambda wc: [f"{OUT}/sgds/{run}/samples.parquet" for run in sgds_runs(particles=True)],
        references=lambda wc: [f"{OUT}/reference/{t}.parquet" for t in sgds_particle_targets()],
    output:
        [f"{OUT}/figures/sgds_particles.{ext}" for ext in FIG_FORMATS],
    params:
        runs=lambda wc: sgds_runs(particles=True),
        targets=lambda wc: sgds_particle_targets(),
    log:
        f"{OUT}/logs/plot_sgds_particles.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "SGDS figure for particle targets (energy and interatomic-distance histograms)"
    script:
        "../scripts/plot_sgds_particles.py"
