rule plot_ramachandran:
    input:
        f"{OUT}/md/{{system}}/dihedrals.parquet",
    output:
        report(
            figure_paths("md_ramachandran"),
            caption="../report/ramachandran.rst",
            category="MD data",
            subcategory="{system}",
        ),
    params:
        bins=lookup(dpath="figures/ramachandran_bins", within=config),
    log:
        f"{OUT}/logs/plot_ramachandran/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "Ramachandran plot of {wildcards.system}"
    script:
        "../scripts/plot_ramachandran.py"


rule plot_energy:
    input:
        f"{OUT}/md/{{system}}/frames.parquet",
    output:
        report(
            figure_paths("md_energy"),
            caption="../report/energy.rst",
            category="MD data",
            subcategory="{system}",
        ),
    params:
        bins=lookup(dpath="figures/energy_bins", within=config),
    log:
        f"{OUT}/logs/plot_energy/{{system}}.log",
    conda:
        "../../envs/plots.yaml"
    message:
        "Energy histogram of {wildcards.system}"
    script:
        "../scripts/plot_energy.py"
