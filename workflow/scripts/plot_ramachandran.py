"""Rule plot_ramachandran: -log density over (phi, psi) of the MD data."""

from _common import setup_logging
from boltzflow.io import read_table
from boltzflow.plots import ramachandran

smk = snakemake  # noqa: F821
setup_logging(smk)
table, _ = read_table(smk.input[0], required=("frame",))
ramachandran(table, list(smk.output), title=f"{smk.wildcards.system} MD", bins=smk.params.bins)
