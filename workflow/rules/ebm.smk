# flowMC-EBM and the persistent ULA-EBM baseline on synthetic (or user) datasets: training,
# the papers' metrics, tables and figures.


rule train_ebm:
    output:
        model=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/model.pt",
        history=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/history.parquet",
        chains=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/chains.parquet",
    input:
        unpack(ebm_user_data),
    params:
        ebm=lookup(dpath="ebm", within=config),
        checkpoint_dir=lambda wc: f"{OUT}/ebm/{wc.dataset}/{wc.ebm_method}-seed{wc.seed}/checkpoint",
    threads: 1
    log:
        f"{OUT}/logs/train_ebm/{{dataset}}-{{ebm_method}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Training an EBM by {wildcards.ebm_method} on {wildcards.dataset} (seed {wildcards.seed})"
    script:
        "../scripts/train_ebm.py"


rule evaluate_ebm:
    input:
        unpack(ebm_user_data),
        model=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/model.pt",
        chains=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/chains.parquet",
        history=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/history.parquet",
    output:
        metrics=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/metrics.parquet",
        density=f"{OUT}/ebm/{{dataset}}/{{ebm_method}}-seed{{seed}}/density.parquet",
    params:
        ebm=lookup(dpath="ebm", within=config),
    threads: 1
    log:
        f"{OUT}/logs/evaluate_ebm/{{dataset}}-{{ebm_method}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Metrics of the {wildcards.ebm_method} EBM of {wildcards.dataset} (seed {wildcards.seed})"
    script:
        "../scripts/evaluate_ebm.py"


rule ebm_tables:
    input:
        metrics=lambda wc: [f"{OUT}/ebm/{run}/metrics.parquet" for run in ebm_runs()],
    output:
        summary=f"{OUT}/tables/ebm_summary.md",
        summary_parquet=f"{OUT}/tables/ebm_summary.parquet",
        mode_weights=f"{OUT}/tables/ebm_mode_weights.md",
        rhat=f"{OUT}/tables/ebm_rhat.md",
    log:
        f"{OUT}/logs/ebm_tables.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "EBM tables (mode weights, R-hat, log-density errors)"
    script:
        "../scripts/ebm_tables.py"


rule plot_ebm:
    input:
        histories=lambda wc: [f"{OUT}/ebm/{run}/history.parquet" for run in ebm_runs()],
        metrics=lambda wc: [f"{OUT}/ebm/{run}/metrics.parquet" for run in ebm_runs()],
        densities=lambda wc: [f"{OUT}/ebm/{run}/density.parquet" for run in ebm_runs()],
        chains=lambda wc: [f"{OUT}/ebm/{run}/chains.parquet" for run in ebm_runs()],
    output:
        weights=[f"{OUT}/figures/ebm_mode_weights.{ext}" for ext in FIG_FORMATS],
        densities=[f"{OUT}/figures/ebm_densities.{ext}" for ext in FIG_FORMATS],
    params:
        runs=lambda wc: ebm_runs(),
    log:
        f"{OUT}/logs/plot_ebm.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "EBM figures (mode weights over training, learned densities)"
    script:
        "../scripts/plot_ebm.py"
