# boltzflow: neural samplers of Boltzmann densities, end to end.
# Default run: `snakemake --cores all`; settings in config/config.yaml, schema in
# workflow/schemas/config.schema.yaml (validated before any job runs).


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/systems.smk"
include: "workflow/rules/md.smk"
include: "workflow/rules/observables.smk"
include: "workflow/rules/convergence.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/flows.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/ebm.smk"
include: "workflow/rules/sgds.smk"
include: "workflow/rules/shootout.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/bench.smk"


rule all:
    default_target: True
    input:
        all_outputs(),
