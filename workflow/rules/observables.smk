rule dihedrals:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
    output:
        f"{OUT}/md/{{system}}/dihedrals.parquet",
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/dihedrals/{{system}}.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Backbone dihedrals of {wildcards.system} (mdtraj)"
    script:
        "../scripts/dihedrals.py"


rule split:
    input:
        f"{OUT}/md/{{system}}/frames.parquet",
    output:
        f"{OUT}/md/{{system}}/split.parquet",
    params:
        fractions=lookup(dpath="split", within=config),
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/split/{{system}}.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Train/val/test split of {wildcards.system}"
    script:
        "../scripts/split.py"
