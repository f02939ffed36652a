"""Rule md_gather: concatenate the replicas of a system into md/{system}/frames.parquet."""

from _common import setup_logging
from boltzflow.io import provenance
from boltzflow.md import gather_replicas

smk = snakemake  # noqa: F821
log = setup_logging(smk)
n = gather_replicas(
    list(smk.input), smk.output[0], target=smk.wildcards.system,
    metadata=provenance(smk.rule, smk.config["md"], seed=smk.config["md"]["seed"]),
)
log.info("gathered %d frames from %d replicas", n, len(smk.input))
