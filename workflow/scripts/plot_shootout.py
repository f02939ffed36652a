"""Rule plot_shootout: errors against energy calls, one panel per target and metric."""

from _common import setup_logging
from boltzflow.io import read_table
from boltzflow.plots import shootout_figure

smk = snakemake  # noqa: F821
log = setup_logging(smk)
table, _ = read_table(smk.input[0], required=("target", "method", "budget", "energy_calls_mean"))
shootout_figure(table, smk.output)
log.info("wrote %s", ", ".join(smk.output))
