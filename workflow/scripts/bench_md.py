"""Rule bench_md: MD stage vs plain OpenMM contexts, and Parquet throughput."""

import os
import platform
from dataclasses import replace

import mdtraj
from _common import load_built, setup_logging
from boltzflow.bench import bench_md, markdown_table
from boltzflow.io import atomic_path, provenance, write_table
from boltzflow.md import MDSettings

smk = snakemake  # noqa: F821
log = setup_logging(smk)
bench = smk.params.bench
built = load_built(smk.input)
md = smk.params.md
settings = MDSettings.from_config(md)
torch_engine = md["engine"] == "torch"
if torch_engine:  # OpenMM runs with real masses and flexible bonds: 1 fs is its validated step
    settings = replace(settings, timestep_fs=1.0)
table = bench_md(built.system, built.positions, built.spec.temperature, settings,
                 steps=bench["md_steps"], repeats=bench["md_repeats"], cores=smk.threads,
                 parquet_rows=bench["parquet_rows"], md_config=md if torch_engine else None,
                 topology=mdtraj.Topology.from_openmm(built.topology),
                 torch_replicas=tuple(bench["torch_replicas"]),
                 torch_evaluations=bench["torch_evaluations"], race_seconds=bench["race_seconds"],
                 phi_relative_halfwidth=bench["phi_relative_halfwidth"], race_ladder=bench["race_ladder"],
                 probe_replicas=bench["probe_replicas"], probe_length_ps=bench["probe_length_ps"], log=log.info)
meta = provenance(smk.rule, bench, system=bench["md_system"], cores=smk.threads,
                  machine=f"{platform.machine()}, {os.cpu_count()} CPUs")
write_table(smk.output.table, table, meta)
notes = [
    f"system {bench['md_system']} ({built.n_atoms} atoms), {settings.timestep_fs} fs steps, "
    f"{bench['md_steps']} steps per measurement, median of {bench['md_repeats']}",
    f"{smk.threads} core(s); machine {meta['machine']}; git {meta['git_commit']}",
    "MD stage = run_replica end to end (platform choice, frames every "
    f"{settings.save_interval_ps} ps, checkpoints, Parquet), replicas in parallel processes",
    "ratio = ns/day divided by the fastest plain single-context OpenMM run in this table",
    "reproduce: snakemake --cores all bench_md",
]
if torch_engine:
    notes += [
        f"torch engine: {md['timestep_fs']} fs BAOAB with {md['torch']['hydrogen_mass_amu']} amu hydrogens, "
        "float32 forces; R replicas split over min(cores, R) single-threaded processes, timed together "
        "after compilation",
        "ratio_vs_openmm_all_cores = ns/day / (fastest plain OpenMM context x cores): OpenMM with one "
        "context per core and perfect scaling",
    ]
with atomic_path(smk.output.markdown) as tmp:
    tmp.write_text(markdown_table(table, "MD engine benchmark", notes))
