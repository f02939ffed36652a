"""Rule plot_sgds_particles: energy and interatomic-distance histograms of the samplers of particle
targets beside their reference samples (the SGDS paper's Fig. 3)."""

from _common import run_keys, setup_logging
from boltzflow.io import read_sample_set, read_table
from boltzflow.plots import sgds_particle_figure

smk = snakemake  # noqa: F821
log = setup_logging(smk)
keys = run_keys(smk.params.runs)
samples = [read_table(p)[0] for p in smk.input.samples]
references = {t: read_sample_set(p, expected_target=t).x for t, p in zip(smk.params.targets, smk.input.references)}
sgds_particle_figure([(*k, s) for k, s in zip(keys, samples)], references, smk.output)
log.info("wrote %s", list(smk.output))
