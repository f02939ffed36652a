"""Rule split: deterministic train/val/test split in contiguous time blocks per replica."""

from _common import setup_logging
from boltzflow.io import provenance, read_sample_set, write_table
from boltzflow.md import block_split

smk = snakemake  # noqa: F821
log = setup_logging(smk)
samples = read_sample_set(smk.input[0])
fractions = smk.params.fractions
table = block_split(samples.columns["replica"].to_numpy(), samples.columns["time_ps"].to_numpy(),
                    fractions["train"], fractions["val"], fractions["test"])
write_table(smk.output[0], table, provenance(smk.rule, fractions, rule_doc="contiguous blocks per replica"))
log.info("split sizes: %s", table["split"].value_counts().to_dict())
