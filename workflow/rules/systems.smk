rule build_system:
    output:
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
        xml=f"{OUT}/systems/{{system}}/system.xml",
        spec=f"{OUT}/systems/{{system}}/spec.json",
    params:
        spec=system_spec,
    priority: CRITICAL_PATH
    # Seconds of work, but it holds two cores: otherwise the second core takes an EBM or SGDS job
    # at the start and one MD job waits minutes for it (measured in the timed default run).
    threads: 2
    log:
        f"{OUT}/logs/build_system/{{system}}.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Building the {wildcards.system} system (force field, solvent model, minimised geometry)"
    script:
        "../scripts/build_system.py"
