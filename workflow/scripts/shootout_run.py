"""Rule shootout_run: one sampler run at a budget of energy calls, scored against exact samples (MD frames for a peptide)."""

import shutil

import pandas as pd
import torch
from _common import setup_logging
from boltzflow.io import provenance, write_table
from boltzflow.shootout.experiment import score_run

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
reference_files = {name: smk.input[name] for name in smk.input.keys()}  # a peptide's MD, a particle system's PT samples
wc = smk.wildcards
row = score_run(smk.params.shootout, smk.params.sgds, wc.target, wc.shootout_method, int(wc.budget), int(wc.seed),
                log=log, checkpoint_dir=smk.params.checkpoint_dir, reference_files=reference_files)
write_table(smk.output[0], pd.DataFrame([row]),
            provenance(smk.rule, dict(smk.params.shootout), seed=int(wc.seed), target=wc.target,
                       method=wc.shootout_method))
shutil.rmtree(smk.params.checkpoint_dir, ignore_errors=True)  # the row is written: nothing left to resume
