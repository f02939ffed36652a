"""Rule plot_sgds: the gap against energy calls during training, and samples beside the target's
exact samples."""

import torch

from _common import run_keys, setup_logging
from boltzflow.io import read_table
from boltzflow.plots import sgds_gap_figure, sgds_samples_figure
from boltzflow.targets import exact_sampler_names, load_target

smk = snakemake  # noqa: F821
log = setup_logging(smk)
keys = run_keys(smk.params.runs)
histories = [read_table(p)[0] for p in smk.input.histories]
samples = [read_table(p)[0] for p in smk.input.samples]
with_sampler = set(exact_sampler_names())
exact = {t: load_target(t).sample(smk.params.n_reference, generator=torch.Generator().manual_seed(0)).numpy()
         for t in dict.fromkeys(k[0] for k in keys) if t in with_sampler}
sgds_gap_figure([(*k, h) for k, h in zip(keys, histories)], smk.output.gap)
sgds_samples_figure([(*k, s) for k, s in zip(keys, samples)], exact, smk.output.samples)
log.info("wrote %s and %s", smk.output.gap, smk.output.samples)
