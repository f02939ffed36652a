"""Rule evaluate_sgds: the SGDS paper's metrics of one trained diffusion sampler."""

import torch
from _common import setup_logging
from boltzflow.sgds.run import evaluate_run

smk = snakemake  # noqa: F821
REFERENCE = (list(smk.input.reference) or [None])[0]  # particle and peptide targets only
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
evaluate_run(smk.params.sgds, smk.wildcards.target, smk.wildcards.sgds_method, int(smk.wildcards.seed),
             model=smk.input.model, metrics=smk.output.metrics, samples=smk.output.samples,
             reference=REFERENCE, rule=smk.rule, log=log)
