"""Rule plot_ebm: EBM mode weights over training and the learned 2-D densities."""

from _common import run_keys, setup_logging
from boltzflow.io import read_table
from boltzflow.plots import ebm_densities_figure, ebm_mode_weights_figure

smk = snakemake  # noqa: F821
log = setup_logging(smk)
keys = run_keys(smk.params.runs)
histories = [read_table(p)[0] for p in smk.input.histories]
metrics = [read_table(p)[0] for p in smk.input.metrics]
densities = [read_table(p)[0] for p in smk.input.densities]
chains = [read_table(p)[0] for p in smk.input.chains]
ebm_mode_weights_figure([(*k, h, m) for k, h, m in zip(keys, histories, metrics)], smk.output.weights)
ebm_densities_figure([(*k, d, c) for k, d, c in zip(keys, densities, chains)], smk.output.densities)
log.info("wrote %s and %s", smk.output.weights, smk.output.densities)
