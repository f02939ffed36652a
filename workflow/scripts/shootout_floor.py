"""Rule shootout_floor: exact samples scored like every method's (the metrics' finite-sample floor)."""

import pandas as pd
import torch
from _common import setup_logging
from boltzflow.io import provenance, write_table
from boltzflow.shootout.experiment import exact_floor

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
md_frames = (smk.input.frames, smk.input.split) if "frames" in smk.input.keys() else None  # a peptide's reference
row = exact_floor(smk.params.shootout, smk.wildcards.target, int(smk.wildcards.seed), md_frames=md_frames)
log.info("%s exact samples, seed %s: %s", smk.wildcards.target, smk.wildcards.seed, row)
write_table(smk.output[0], pd.DataFrame([row]),
            provenance(smk.rule, dict(smk.params.shootout), seed=int(smk.wildcards.seed), target=smk.wildcards.target))
