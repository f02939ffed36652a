"""Rule plot_energy: histogram of the reduced energies of the MD data."""

from _common import setup_logging
from boltzflow.io import read_sample_set
from boltzflow.plots import energy_histogram

smk = snakemake  # noqa: F821
setup_logging(smk)
samples = read_sample_set(smk.input[0])
energy_histogram(samples.energy, list(smk.output), title=f"{smk.wildcards.system} MD",
                 bins=smk.params.bins, groups=samples.columns["replica"].to_numpy())
