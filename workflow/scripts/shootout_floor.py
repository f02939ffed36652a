"""Rule shootout_floor: exact samples scored like every method's (the metrics' finite-sample floor)."""

import pandas as pd
import torch
from _common import setup_logging
from boltzflow.io import provenance, write_table
from boltzflow.shootout.experiment import exact_floor

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
reference_files = {name: smk.input[name] for name in smk.input.keys()}  # a peptide's MD, a particle system's PT samples
row = exact_floor(smk.params.shootout, smk.wildcards.target, int(smk.wildcards.seed), reference_files=reference_files)
log.info("%s exact samples, seed %s: %s", smk.wildcards.target, smk.wildcards.seed, row)
write_table(smk.output[0], pd.DataFrame([row]),
            provenance(smk.rule, dict(smk.params.shootout), seed=int(smk.wildcards.seed), target=smk.wildcards.target))
