"""Rule train_ebm: one EBM (and its companion flow) trained by flowMC-EBM or ULA-EBM."""

import torch
from _common import setup_logging
from boltzflow.ebm import train_run

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
train_run(smk.params.ebm, smk.wildcards.dataset, smk.wildcards.ebm_method, int(smk.wildcards.seed),
          model=smk.output.model, history=smk.output.history, chains=smk.output.chains,
          checkpoint_dir=smk.params.checkpoint_dir, rule=smk.rule, log=log)
