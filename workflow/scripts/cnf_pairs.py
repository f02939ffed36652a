"""Rule cnf_pairs: the reflow shards, checked to come from the current teacher, merged into one file."""

from _common import setup_logging
from boltzflow.cnf import load_cnf
from boltzflow.couplings import merge_reflow_shards
from boltzflow.flows import frame_fingerprint
from boltzflow.io import provenance

smk = snakemake  # noqa: F821
log = setup_logging(smk)
settings = smk.params.settings
_, extra = load_cnf(smk.input.model)
merge_reflow_shards(list(smk.input.shards), smk.input.model, smk.output[0],
                    provenance(smk.rule, settings, seed=settings["seed"], kind="cnf",
                               frame=frame_fingerprint(extra["frame"]), system=smk.wildcards.system),
                    log=log)
