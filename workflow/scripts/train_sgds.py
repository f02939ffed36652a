"""Rule train_sgds: one diffusion sampler trained by SGDS or a trajectory-balance baseline."""

import torch
from _common import setup_logging
from boltzflow.sgds.run import train_run

smk = snakemake  # noqa: F821
REFERENCE = (list(smk.input.reference) or [None])[0]  # particle and peptide targets only
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
train_run(smk.params.sgds, smk.wildcards.target, smk.wildcards.sgds_method, int(smk.wildcards.seed),
          model=smk.output.model, history=smk.output.history, checkpoint_dir=smk.params.checkpoint_dir,
          reference=REFERENCE,
          rule=smk.rule, log=log)
