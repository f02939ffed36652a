"""Rule evaluate_ebm: the flowMC-EBM paper's metrics of one trained EBM."""

import torch
from _common import setup_logging
from boltzflow.ebm import evaluate_run

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
evaluate_run(smk.params.ebm, smk.wildcards.dataset, smk.wildcards.ebm_method, int(smk.wildcards.seed),
             model=smk.input.model, chains=smk.input.chains, history=smk.input.history, metrics=smk.output.metrics,
             density=smk.output.density, rule=smk.rule, log=log)
