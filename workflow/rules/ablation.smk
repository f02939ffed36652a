# RegFlow ablations (paper Fig. 3): the main flow rules reused with one setting changed per variant.


use rule train_cnf as train_ablation_teacher with:
    output:
        model=f"{OUT}/ablation/{{system}}/cnf-steps{{teacher_steps}}-seed{{seed}}/model.pt",
        history=f"{OUT}/ablation/{{system}}/cnf-steps{{teacher_steps}}-seed{{seed}}/history.parquet",
    params:
        settings=ablation_teacher_settings,
        checkpoint_dir=lambda wc: f"{OUT}/ablation/{wc.system}/cnf-steps{wc.teacher_steps}-seed{wc.seed}/checkpoint",
    log:
        f"{OUT}/logs/train_ablation_teacher/{{system}}-steps{{teacher_steps}}-seed{{seed}}.log",
    message:
        "Ablation: a CNF teacher of {wildcards.system} trained {wildcards.teacher_steps} steps"


use rule cnf_pairs_shard as ablation_pairs_shard with:
    input:
        model=ablation_teacher_model,
    output:
        temp(f"{OUT}/ablation/{{system}}/couplings/cnf-steps{{teacher_steps}}-shards/{{shard}}.parquet"),
    params:
        settings=lookup(dpath="couplings/cnf", within=config),
        n_pairs=ablation_shard_pairs,
    log:
        f"{OUT}/logs/ablation_pairs/{{system}}-steps{{teacher_steps}}-shard{{shard}}.log",
    message:
        "Ablation: reflow pairs of the {wildcards.teacher_steps}-step teacher of {wildcards.system}, shard {wildcards.shard}"


use rule cnf_pairs as ablation_pairs with:
    input:
        shards=ablation_shard_files,
        model=ablation_teacher_model,
    output:
        f"{OUT}/ablation/{{system}}/couplings/cnf-steps{{teacher_steps}}.parquet",
    log:
        f"{OUT}/logs/ablation_pairs/{{system}}-steps{{teacher_steps}}.log",
    message:
        "Ablation: reflow pairs of the {wildcards.teacher_steps}-step teacher of {wildcards.system}, merged"


use rule train_flow as train_ablation with:
    input:
        unpack(ablation_training_input),
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
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
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
        unpack(ablation_plot_inputs),
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
        main_models=ablation_main_models,
        settings=lookup(dpath="ablation", within=config),
    log:
        f"{OUT}/logs/plot_ablation/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "RegFlow ablations of {wildcards.system}: regulariser weight, number of pairs, teacher steps"
    script:
        "../scripts/plot_ablation.py"
