# Convergence report of the MD data: basin populations with block-bootstrap intervals.


rule md_convergence:
    input:
        frames=f"{OUT}/md/{{system}}/frames.parquet",
        dihedrals=f"{OUT}/md/{{system}}/dihedrals.parquet",
    output:
        table=f"{OUT}/md/{{system}}/convergence.parquet",
        markdown=f"{OUT}/md/{{system}}/convergence.md",
        figures=report(
            figure_paths("md_populations"),
            caption="../report/populations.rst",
            category="MD data",
            subcategory="{system}",
        ),
    params:
        settings=lookup(dpath="convergence", within=config),
    log:
        f"{OUT}/logs/md_convergence/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "Convergence report (basin populations) of {wildcards.system}"
    script:
        "../scripts/md_convergence.py"
