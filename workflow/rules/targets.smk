rule reference_samples:
    output:
        f"{OUT}/reference/{{target}}.parquet",
    params:
        settings=lookup(dpath="reference", within=config),
    threads: 2
    log:
        f"{OUT}/logs/reference_samples/{{target}}.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Reference samples of {wildcards.target} by parallel-tempering MCMC"
    script:
        "../scripts/reference_samples.py"
