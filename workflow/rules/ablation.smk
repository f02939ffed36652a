# RegFlow ablations (paper Fig. 3): the main flow rules reused with one setting changed per variant.


use rule train_flow as train_ablation with:
    output:
        model=f"{OUT}/ablation/{{system}}/{{method}}-{{arch}}-{{variant}}-seed{{seed}}/model.pt",
        history=f"{OUT}/ablation/{{system}}/{{method}}-{{arch}}-{{variant}}-seed{{seed}}/history.parquet",
        invertibility=f"{OUT}/ablation/{{system}}/{{method}}-{{arch}}-{{variant}}-seed{{seed}}/invertibility.json",
    params:
        flows=ablation_flows,
        checkpoint_dir=lambda wc: f"{OUT}/ablation/{wc.system}/{wc.method}-{wc.arch}-{wc.variant}-seed{wc.seed}/checkpoint",
    log:
        f"{OUT}/logs/train_ablation/{{system}}-{{method}}-{{arch}}-{{variant}}-seed{{seed}}.log",
    message:
        "Ablation {wildcards.variant}: a {wildcards.arch} flow by {wildcards.method} on {wildcards.system}"


use rule sample_flow as sample_ablation with:
    input:
        model=f"{OUT}/ablation/{{system}}/{{method}}-{{arch}}-{{variant}}-seed{{seed}}/model.pt",
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
        xml=f"{OUT}/systems/{{system}}/system.xml",
        spec=f"{OUT}/systems/{{system}}/spec.json",
    output:
        f"{OUT}/ablation/{{system}}/samples/{{method}}-{{arch}}-{{variant}}-seed{{seed}}.parquet",
    log:
        f"{OUT}/logs/sample_ablation/{{system}}-{{method}}-{{arch}}-{{variant}}-seed{{seed}}.log",
    message:
        "Sampling the ablation flow {wildcards.variant} of {wildcards.system}"


use rule score_samples as score_ablation with:
    input:
        unpack(ablation_score_inputs),
    output:
        metrics=f"{OUT}/ablation/{{system}}/metrics/{{model}}.parquet",
        resampled=f"{OUT}/ablation/{{system}}/metrics/{{model}}_resampled.parquet",
    log:
        f"{OUT}/logs/score_ablation/{{system}}-{{model}}.log",
    message:
        "Metrics of the ablation flow {wildcards.model} on {wildcards.system}"


rule plot_ablation:
    input:
        lambda wc: expand(f"{OUT}/ablation/{wc.system}/metrics/{{model}}.parquet", model=ablation_models()),
    output:
        figures=report(
            figure_paths("ablation"),
            caption="../report/ablation.rst",
            category="Flows",
            subcategory="{system}",
        ),
        table=f"{OUT}/tables/{{system}}_ablation.parquet",
        markdown=f"{OUT}/tables/{{system}}_ablation.md",
    params:
        models=ablation_models(),
        settings=lookup(dpath="ablation", within=config),
    log:
        f"{OUT}/logs/plot_ablation/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "RegFlow ablations of {wildcards.system}: regulariser weight and number of pairs"
    script:
        "../scripts/plot_ablation.py"
