"""Rule md_replica: one OpenMM Langevin replica -> a sample set of its frames."""

from _common import load_built, setup_logging
from boltzflow.io import provenance
from boltzflow.md import MDSettings, run_replica

smk = snakemake  # noqa: F821
log = setup_logging(smk)
built = load_built(smk.input)
settings = MDSettings.from_config(smk.params.md)
summary = run_replica(
    built.system,
    built.positions,
    built.spec.temperature,
    settings,
    int(smk.wildcards.replica),
    smk.output[0],
    smk.params.checkpoint_dir,
    target=smk.wildcards.system,
    threads=smk.threads,
    metadata=provenance(smk.rule, smk.params.md, seed=settings.seed),
)
log.info("done: %s", summary)
