# One comparison across the methods (issue 19): every sampler of shootout.methods on every target
# of shootout.targets at every budget of energy calls, over seeds; the exact-samples floor; the
# table and the figure. Rule `shootout` builds them all. A peptide's reference is its MD, a particle system's its
# parallel-tempering reference samples (rule reference_samples).


rule shootout_run:
    input:
        unpack(shootout_reference),
    output:
        f"{OUT}/shootout/{{target}}/{{shootout_method}}-b{{budget}}-seed{{seed}}.parquet",
    params:
        shootout=lookup(dpath="shootout", within=config),
        sgds=lookup(dpath="sgds", within=config),
        checkpoint_dir=lambda wc: f"{OUT}/shootout/{wc.target}/{wc.shootout_method}-b{wc.budget}-seed{wc.seed}.checkpoint",
    threads: 1
    log:
        f"{OUT}/logs/shootout_run/{{target}}-{{shootout_method}}-b{{budget}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Shootout: {wildcards.shootout_method} on {wildcards.target} with {wildcards.budget} energy calls (seed {wildcards.seed})"
    script:
        "../scripts/shootout_run.py"


rule shootout_floor:
    input:
        unpack(shootout_reference),
    output:
        f"{OUT}/shootout/{{target}}/exact-seed{{seed}}.parquet",
    params:
        shootout=lookup(dpath="shootout", within=config),
    threads: 1
    log:
        f"{OUT}/logs/shootout_floor/{{target}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Shootout: exact samples of {wildcards.target} scored as the methods are (seed {wildcards.seed})"
    script:
        "../scripts/shootout_floor.py"


rule shootout_table:
    input:
        runs=lambda wc: shootout_rows(),
    output:
        table=f"{OUT}/tables/shootout.md",
        table_parquet=f"{OUT}/tables/shootout.parquet",
    log:
        f"{OUT}/logs/shootout_table.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Shootout table (method x target x budget, mean and interval over seeds)"
    script:
        "../scripts/shootout_table.py"


rule plot_shootout:
    input:
        f"{OUT}/tables/shootout.parquet",
    output:
        report(
            [f"{OUT}/figures/shootout.{ext}" for ext in FIG_FORMATS],
            caption="../report/shootout.rst",
            category="Comparison of the methods",
        ),
    log:
        f"{OUT}/logs/plot_shootout.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Shootout figure (errors against energy calls)"
    script:
        "../scripts/plot_shootout.py"


rule shootout:
    input:
        shootout_outputs(),
    default_target: False
