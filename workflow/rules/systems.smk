rule build_system:
    output:
        pdb=f"{OUT}/systems/{{system}}/topology.pdb",
        xml=f"{OUT}/systems/{{system}}/system.xml",
        spec=f"{OUT}/systems/{{system}}/spec.json",
    params:
        spec=system_spec,
    priority: CRITICAL_PATH
    log:
        f"{OUT}/logs/build_system/{{system}}.log",
    conda:
        "../../envs/md.yaml"
    message:
        "Building the {wildcards.system} system (force field, solvent model, minimised geometry)"
    script:
        "../scripts/build_system.py"
