"""Rule plot_sgds: the gap against energy calls during training, and samples beside the target."""

from _common import run_keys, setup_logging
from boltzflow.io import read_table
from boltzflow.plots import sgds_gap_figure, sgds_samples_figure

smk = snakemake  # noqa: F821
log = setup_logging(smk)
keys = run_keys(smk.params.runs)
histories = [read_table(p)[0] for p in smk.input.histories]
samples = [read_table(p)[0] for p in smk.input.samples]
sgds_gap_figure([(*k, h) for k, h in zip(keys, histories)], smk.output.gap)
sgds_samples_figure([(*k, s) for k, s in zip(keys, samples)], smk.output.samples, n_reference=smk.params.n_reference)
log.info("wrote %s and %s", smk.output.gap, smk.output.samples)
