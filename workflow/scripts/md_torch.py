"""Rule md_torch: one job's share of the parallel-tempering ladders (batched torch Langevin)."""

import torch
from _common import load_built, setup_logging
from boltzflow.io import provenance
from boltzflow.md import ladder_split, run_parallel_tempering, torch_md_settings

smk = snakemake  # noqa: F821
log = setup_logging(smk)
torch.set_num_threads(smk.threads)
built = load_built(smk.input)
md = smk.params.md
job = int(smk.wildcards.job)
settings = torch_md_settings(md, built.spec.temperature, job)
first, count = ladder_split(md["replicas"], md["torch"]["jobs"])[job]
log.info("job %d: ladders %d-%d of %d, %d torch thread(s)", job, first, first + count - 1, md["replicas"],
         smk.threads)
summary = run_parallel_tempering(
    built.system,
    built.positions,
    settings,
    smk.output[0],
    smk.params.checkpoint_dir,
    target=smk.wildcards.system,
    topology=built.topology,
    log=log,
    replica_offset=first,
    metadata=provenance(smk.rule, md, seed=settings.seed, job=job),
)
log.info("done: %s", {k: v for k, v in summary.items() if k != "swap_acceptance"})
