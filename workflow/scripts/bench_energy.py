"""Rule bench_energy: torch force field vs OpenMM, configurations/s, as ratios."""

import os
import platform

from _common import setup_logging
from boltzflow.bench import bench_energy, energy_markdown
from boltzflow.io import atomic_path, provenance, write_table

smk = snakemake  # noqa: F821
log = setup_logging(smk)
bench = smk.params.bench
table = bench_energy(bench["energy_systems"], bench["energy_batches"], cores=smk.threads,
                     repeats=bench["energy_repeats"], openmm_configs=bench["openmm_configs"],
                     log=log.info)
meta = provenance(smk.rule, bench, cores=smk.threads, machine=f"{platform.machine()}, {os.cpu_count()} CPUs")
write_table(smk.output.table, table, meta)
notes = [
    f"{smk.threads} core(s) (torch threads and OpenMM pool size); machine {meta['machine']}; git {meta['git_commit']}",
    "configurations: minimised structure + 0.005 nm Gaussian noise; energies in kT, forces in kT/nm",
    f"OpenMM loops timed on min(batch, {bench['openmm_configs']}) configurations "
    "(their cost per configuration does not depend on the batch)",
    f"{bench['energy_repeats']} rounds; each round times every engine once for at least 0.5 s, "
    "and ratios are taken within a round (paired), so a slow phase of the machine hits both sides",
    "reproduce: snakemake --cores all bench_energy",
]
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text(energy_markdown(table, notes))
