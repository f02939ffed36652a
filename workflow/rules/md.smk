# Equilibrium data: simulated with OpenMM (replicas as separate jobs, then gathered), or read
# from the user's files when md.source is "file".

if config["md"]["source"] == "openmm":

    rule md_replica:
        input:
            pdb=f"{OUT}/systems/{{system}}/topology.pdb",
            xml=f"{OUT}/systems/{{system}}/system.xml",
            spec=f"{OUT}/systems/{{system}}/spec.json",
        output:
            f"{OUT}/md/{{system}}/replicas/replica{{replica}}.parquet",
        params:
            md=lookup(dpath="md", within=config),
            checkpoint_dir=lambda wc: f"{OUT}/md/{wc.system}/replicas/replica{wc.replica}.ckpt",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=240,
        log:
            f"{OUT}/logs/md_replica/{{system}}-{{replica}}.log",
        conda:
            "../../envs/md.yaml"
        message:
            "MD replica {wildcards.replica} of {wildcards.system} (OpenMM Langevin)"
        script:
            "../scripts/md_replica.py"

    rule md_gather:
        input:
            expand(
                f"{OUT}/md/{{{{system}}}}/replicas/replica{{replica}}.parquet",
                replica=range(config["md"]["replicas"]),
            ),
        output:
            f"{OUT}/md/{{system}}/frames.parquet",
        log:
            f"{OUT}/logs/md_gather/{{system}}.log",
        conda:
            "../../envs/md.yaml"
        message:
            "Gathering the MD replicas of {wildcards.system}"
        script:
            "../scripts/md_gather.py"

else:

    rule md_import:
        input:
            pdb=f"{OUT}/systems/{{system}}/topology.pdb",
            xml=f"{OUT}/systems/{{system}}/system.xml",
            spec=f"{OUT}/systems/{{system}}/spec.json",
            frames=lambda wc: config["md"]["files"][wc.system]["frames"],
            topology=lambda wc: config["md"]["files"][wc.system]["topology"],
        output:
            f"{OUT}/md/{{system}}/frames.parquet",
        params:
            files=lambda wc: config["md"]["files"][wc.system],
        log:
            f"{OUT}/logs/md_import/{{system}}.log",
        conda:
            "../../envs/md.yaml"
        message:
            "Importing the user's frames for {wildcards.system}"
        script:
            "../scripts/md_import.py"
