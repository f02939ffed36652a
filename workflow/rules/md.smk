# Equilibrium data: simulated (md.engine torch: parallel-tempering ladders split over a few
# jobs; openmm: one job per replica), then gathered; or read from the user's files when
# md.source is "file".

MD = config["md"]

if MD["source"] == "simulate" and MD["engine"] == "torch":

    rule md_torch:
        input:
            pdb=f"{OUT}/systems/{{system}}/topology.pdb",
            xml=f"{OUT}/systems/{{system}}/system.xml",
            spec=f"{OUT}/systems/{{system}}/spec.json",
        output:
            f"{OUT}/md/{{system}}/jobs/job{{job}}.parquet",
        params:
            md=lookup(dpath="md", within=config),
            checkpoint_dir=lambda wc: f"{OUT}/md/{wc.system}/jobs/job{wc.job}.ckpt",
        threads: MD["torch"]["threads_per_job"]
        priority: CRITICAL_PATH
        log:
            f"{OUT}/logs/md_torch/{{system}}-{{job}}.log",
        conda:
            "../../envs/md.yaml"
        message:
            "MD job {wildcards.job} of {wildcards.system} (batched torch Langevin, parallel tempering)"
        script:
            "../scripts/md_torch.py"

    MD_PARTS = expand(f"{OUT}/md/{{{{system}}}}/jobs/job{{job}}.parquet", job=range(MD["torch"]["jobs"]))

elif MD["source"] == "simulate":

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
        priority: CRITICAL_PATH
        log:
            f"{OUT}/logs/md_replica/{{system}}-{{replica}}.log",
        conda:
            "../../envs/md.yaml"
        message:
            "MD replica {wildcards.replica} of {wildcards.system} (OpenMM Langevin)"
        script:
            "../scripts/md_replica.py"

    MD_PARTS = expand(f"{OUT}/md/{{{{system}}}}/replicas/replica{{replica}}.parquet", replica=range(MD["replicas"]))

if MD["source"] == "simulate":

    rule md_gather:
        input:
            MD_PARTS,
        output:
            f"{OUT}/md/{{system}}/frames.parquet",
        priority: CRITICAL_PATH
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
