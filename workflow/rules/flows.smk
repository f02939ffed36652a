# RegFlow: regression pairs (exact OT, or reflow from a flow-matching CNF) and coupling flows
# trained by RegFlow or maximum likelihood on each system's MD training split.


rule flow_frame:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
        topology=f"{OUT}/systems/{{system}}/topology.pdb",
    output:
        f"{OUT}/models/{{system}}/frame.json",
    params:
        settings=lookup(dpath="flows/frame", within=config),
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/flow_frame/{{system}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Coordinate frame of the flows of {wildcards.system}"
    script:
        "../scripts/flow_frame.py"


rule ot_pairs:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
        frame=f"{OUT}/models/{{system}}/frame.json",
    output:
        f"{OUT}/couplings/{{system}}/ot.parquet",
    params:
        settings=lookup(dpath="couplings/ot", within=config),
    log:
        f"{OUT}/logs/ot_pairs/{{system}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Exact OT pairs for {wildcards.system} (POT)"
    script:
        "../scripts/ot_pairs.py"


rule train_cnf:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        split=f"{OUT}/md/{{system}}/split.parquet",
        frame=f"{OUT}/models/{{system}}/frame.json",
    output:
        model=f"{OUT}/models/{{system}}/cnf-seed{{seed}}/model.pt",
        history=f"{OUT}/models/{{system}}/cnf-seed{{seed}}/history.parquet",
    params:
        settings=cnf_teacher_settings,
        checkpoint_dir=lambda wc: f"{OUT}/models/{wc.system}/cnf-seed{wc.seed}/checkpoint",
    threads: 1
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/train_cnf/{{system}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Flow-matching CNF teacher for {wildcards.system}, seed {wildcards.seed}"
    script:
        "../scripts/train_cnf.py"


rule cnf_pairs_shard:
    input:
        unpack(cnf_pairs_input),
    output:
        temp(f"{OUT}/couplings/{{system}}/cnf-shards/{{shard}}.parquet"),
    params:
        settings=lookup(dpath="couplings/cnf", within=config),
        n_pairs=cnf_shard_pairs,
    wildcard_constraints:
        shard=r"\d+",
    threads: 1
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/cnf_pairs/{{system}}-shard{{shard}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Reflow pairs from the CNF teacher of {wildcards.system}, shard {wildcards.shard}"
    script:
        "../scripts/cnf_pairs_shard.py"


rule cnf_pairs:
    input:
        shards=cnf_shard_files,
        model=cnf_teacher_model,
    output:
        f"{OUT}/couplings/{{system}}/cnf.parquet",
    params:
        settings=lookup(dpath="couplings/cnf", within=config),
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/cnf_pairs/{{system}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Reflow pairs of {wildcards.system}: the shards merged"
    script:
        "../scripts/cnf_pairs.py"


rule train_flow:
    input:
        unpack(flow_training_input),
    output:
        model=f"{OUT}/models/{{system}}/{{method}}-{{arch}}-seed{{seed}}/model.pt",
        history=f"{OUT}/models/{{system}}/{{method}}-{{arch}}-seed{{seed}}/history.parquet",
        invertibility=f"{OUT}/models/{{system}}/{{method}}-{{arch}}-seed{{seed}}/invertibility.json",
    params:
        flows=lookup(dpath="flows", within=config),
        checkpoint_dir=lambda wc: f"{OUT}/models/{wc.system}/{wc.method}-{wc.arch}-seed{wc.seed}/checkpoint",
    threads: 1
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/train_flow/{{system}}-{{method}}-{{arch}}-seed{{seed}}.log",
    conda:
        "../../envs/flows.yaml"
    message:
        "Training a {wildcards.arch} flow by {wildcards.method} on {wildcards.system} (seed {wildcards.seed})"
    script:
        "../scripts/train_flow.py"
