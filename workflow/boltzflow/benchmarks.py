"""Benchmarks that compare engines side by side in one run, reported as ratios.

:func:`bench_md` measures, on the same machine and in the same process tree:

- plain OpenMM: one ``Context`` with a Langevin integrator stepping with no I/O, on each
  available platform (the CPU platform with as many threads as the benchmark was given);
- the MD stage: :func:`boltzflow.md.run_replica` end to end (platform choice, equilibration,
  saving a frame every ``save_interval_ps``, checkpoints, writing Parquet), for one replica and
  for as many replicas in parallel processes as there are cores, as the workflow runs them;
- the Parquet writer and reader of sample sets, in rows per second.

Every MD row carries its ratio to the fastest plain single-context OpenMM run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import openmm
import pandas as pd

from boltzflow.io import read_sample_set, write_sample_set
from boltzflow.md import MDSettings, available_platforms, measure_ns_per_day, run_replica

__all__ = ["bench_md", "markdown_table"]


def _stage_worker(job_file: str) -> None:
    """Entry point of one benchmark worker process: run one MD-stage replica, record its span.

    Times are taken inside the worker, so interpreter start-up and imports are not counted
    (a workflow job pays those too, once, but they do not grow with simulated time).
    """
    job = json.loads(Path(job_file).read_text())
    folder = Path(job["folder"])
    system = openmm.XmlSerializer.deserialize((folder / "system.xml").read_text())
    positions = np.load(folder / "positions.npy")
    settings = MDSettings(**job["settings"])
    replica = job["replica"]
    start = time.time()
    run_replica(system, positions, job["temperature"], settings, replica,
                folder / f"replica{replica}.parquet", folder / f"ckpt{replica}", target="bench")
    (folder / f"span{replica}.json").write_text(json.dumps([start, time.time()]))


def _stage_ns_per_day(xml: str, positions: np.ndarray, temperature: float,
                      settings: MDSettings, replicas: int) -> float:
    """Aggregate ns/day of ``replicas`` MD-stage replicas run as parallel processes.

    Workers are separate interpreters (not multiprocessing): OpenMM state must never cross a
    fork, and ``spawn`` would re-run the calling Snakemake script in every worker.
    """
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "system.xml").write_text(xml)
        np.save(folder / "positions.npy", positions)
        procs = []
        for r in range(replicas):
            job = folder / f"job{r}.json"
            job.write_text(json.dumps({"folder": tmp, "settings": asdict(settings),
                                       "temperature": temperature, "replica": r}))
            procs.append(subprocess.Popen([sys.executable, "-m", "boltzflow.benchmarks", str(job)]))
        for r, proc in enumerate(procs):
            if proc.wait() != 0:
                raise RuntimeError(f"benchmark worker {r} failed with exit code {proc.returncode}")
        spans = [json.loads((folder / f"span{r}.json").read_text()) for r in range(replicas)]
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    simulated_ns = replicas * (settings.equilibration_ps + settings.length_ps) * 1e-3
    return simulated_ns / (wall / 86400.0)


def bench_md(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    md: MDSettings,
    *,
    steps: int,
    repeats: int,
    cores: int,
    parquet_rows: int,
    log=print,
) -> pd.DataFrame:
    """Run the benchmark; returns one row per (engine, platform, replicas) with medians."""
    rows: list[dict[str, Any]] = []
    platforms = [p for p in available_platforms() if p in ("Reference", "CPU", "CUDA", "OpenCL")]
    for name in platforms:
        threads = cores if name == "CPU" else 1
        values = [measure_ns_per_day(system, positions, temperature, md, name, threads, steps)
                  for _ in range(repeats)]
        log(f"plain OpenMM {name} ({threads} thread(s)): {statistics.median(values):,.0f} ns/day")
        rows.append({"engine": "plain OpenMM context", "platform": name, "replicas": 1,
                     "threads": threads, "ns_per_day": statistics.median(values),
                     "repeats": repeats, "unit": "ns/day"})

    length_ps = steps * md.timestep_fs * 1e-3
    stage = replace(md, length_ps=length_ps, equilibration_ps=0.0,
                    checkpoint_interval_ps=max(md.save_interval_ps, length_ps / 4), platform="auto")
    xml = openmm.XmlSerializer.serialize(system)
    for replicas in sorted({1, cores}):
        values = [_stage_ns_per_day(xml, positions, temperature, stage, replicas) for _ in range(repeats)]
        log(f"MD stage, {replicas} replica(s) in parallel: {statistics.median(values):,.0f} ns/day")
        rows.append({"engine": "boltzflow MD stage (run_replica)", "platform": "auto",
                     "replicas": replicas, "threads": replicas,
                     "ns_per_day": statistics.median(values), "repeats": repeats, "unit": "ns/day"})

    frame = pd.DataFrame(rows)
    plain = frame[frame.engine == "plain OpenMM context"]
    best = plain.loc[plain.ns_per_day.idxmax()]
    frame["ratio_vs_best_plain"] = frame.ns_per_day / best.ns_per_day
    frame["baseline"] = f"plain OpenMM {best.platform}, 1 context"

    n_atoms = system.getNumParticles()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(parquet_rows, 3 * n_atoms)).astype(np.float32)
    energy = rng.normal(size=parquet_rows)
    write_rates, read_rates = [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.parquet"
        for _ in range(repeats):
            start = time.perf_counter()
            write_sample_set(path, x, energy, target="bench", units="nm",
                             extra={"replica": np.zeros(parquet_rows, np.int32),
                                    "time_ps": np.arange(parquet_rows, dtype=np.float64)})
            write_rates.append(parquet_rows / (time.perf_counter() - start))
            start = time.perf_counter()
            read_sample_set(path)
            read_rates.append(parquet_rows / (time.perf_counter() - start))
    log(f"Parquet sample sets: write {statistics.median(write_rates):,.0f} rows/s, "
        f"read {statistics.median(read_rates):,.0f} rows/s (dim {3 * n_atoms})")
    io_rows = pd.DataFrame([
        {"engine": f"Parquet writer (dim {3 * n_atoms})", "platform": "-", "replicas": 0, "threads": 1,
         "rows_per_s": statistics.median(write_rates), "repeats": repeats, "unit": "rows/s"},
        {"engine": f"Parquet reader (dim {3 * n_atoms})", "platform": "-", "replicas": 0, "threads": 1,
         "rows_per_s": statistics.median(read_rates), "repeats": repeats, "unit": "rows/s"},
    ])
    return pd.concat([frame, io_rows], ignore_index=True)


def markdown_table(frame: pd.DataFrame, title: str, notes: list[str]) -> str:
    """A Markdown report of a benchmark table."""
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + [""]
    cols = [c for c in ("engine", "platform", "replicas", "threads", "ns_per_day",
                        "ratio_vs_best_plain", "rows_per_s", "repeats") if c in frame]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                cells.append("" if np.isnan(v) else (f"{v:.2f}" if c.startswith("ratio") else f"{v:,.0f}"))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _stage_worker(sys.argv[1])


def _timed_rate(fn, n_configs: int, min_seconds: float) -> float:
    """Configurations/s of ``fn`` (which evaluates ``n_configs`` configurations), timed over
    as many calls as fit in ``min_seconds`` (at least one)."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * n_configs / elapsed


def bench_energy(
    systems: list[str],
    batches: list[int],
    *,
    cores: int,
    repeats: int,
    openmm_configs: int,
    min_seconds: float = 0.5,
    noise_nm: float = 0.005,
    log=print,
) -> pd.DataFrame:
    """Configurations/s of energies and energies+forces: torch force field vs OpenMM.

    For each system, batch size and quantity, every engine is timed once per round, in
    ``repeats`` rounds: the torch target in float32 and float64, OpenMM single-Context loops on
    the Reference and CPU platforms, and the Reference pool with one Context per core. An
    OpenMM loop costs the same per configuration at any batch size, so it is timed on
    ``min(batch, openmm_configs)`` configurations. Each round's rates are divided by that
    round's Reference loop, so that slow phases of a shared machine hit both sides of a ratio;
    the table reports the median rate and the median, minimum and maximum of these paired
    ratios.
    """
    import torch

    from boltzflow.targets import load_target
    from boltzflow.targets.openmm_pool import OpenMMPool

    torch.set_num_threads(cores)
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(0)
    for name in systems:
        # Compile up front, so that compilation happens in the warm-up, never inside a timing.
        target = load_target(name, compile=True)
        n = max(batches)
        x64 = (target.positions[None] + rng.normal(scale=noise_nm, size=(n, target.n_atoms, 3))).reshape(n, -1)
        inputs = {dtype: torch.as_tensor(x64, dtype=dtype) for dtype in (torch.float32, torch.float64)}
        pools = {
            "OpenMM Reference, 1 context": OpenMMPool(target.openmm_system, target.temperature,
                                                     platform="Reference", workers=1, threads_per_context=1),
            "OpenMM CPU, 1 context": OpenMMPool(target.openmm_system, target.temperature,
                                                platform="CPU", workers=1, threads_per_context=cores),
            f"OpenMM Reference pool, {cores} contexts": OpenMMPool(
                target.openmm_system, target.temperature, platform="Reference", workers=cores,
                threads_per_context=1),
        }
        pool_threads = {label: (cores if "CPU" in label or "pool" in label else 1) for label in pools}
        for batch in batches:
            m = min(batch, openmm_configs)
            for quantity in ("energy", "energy+forces"):
                forces = quantity == "energy+forces"
                engines: dict[tuple[str, str], Any] = {}
                for dtype, x_all in inputs.items():
                    x = x_all[:batch].contiguous()
                    if forces:
                        engines[("torch", str(dtype).replace("torch.", ""))] = (
                            lambda x=x: target.energy_and_forces(x), batch)
                    else:
                        def energy_only(x=x):
                            with torch.no_grad():
                                target.energy(x)
                        engines[("torch", str(dtype).replace("torch.", ""))] = (energy_only, batch)
                for label, pool in pools.items():
                    engines[(label, "float64")] = (lambda pool=pool: pool(x64[:m], forces=forces), m)
                for fn, _ in engines.values():
                    fn()  # warm-up: allocations, lazy initialisation, compilation
                rates: dict[tuple[str, str], list[float]] = {key: [] for key in engines}
                for _ in range(repeats):
                    for key, (fn, size) in engines.items():
                        rates[key].append(_timed_rate(fn, size, min_seconds))
                reference = np.array(rates[("OpenMM Reference, 1 context", "float64")])
                for (engine, dtype), values in rates.items():
                    ratios = np.array(values) / reference
                    rows.append({
                        "system": name, "engine": engine, "dtype": dtype, "batch": batch,
                        "quantity": quantity, "configs_per_s": float(np.median(values)),
                        "threads": cores if engine == "torch" else pool_threads[engine],
                        "timed_configs": batch if engine == "torch" else m,
                        "ratio_vs_openmm_reference": float(np.median(ratios)),
                        "ratio_min": float(ratios.min()), "ratio_max": float(ratios.max()),
                        "repeats": repeats,
                    })
                    log(f"{name} {engine} {dtype} batch {batch} {quantity}: {np.median(values):,.0f}/s "
                        f"({np.median(ratios):.1f}x Reference, range {ratios.min():.1f}-{ratios.max():.1f})")
        for pool in pools.values():
            pool.close()
    return pd.DataFrame(rows)


def energy_markdown(frame: pd.DataFrame, notes: list[str]) -> str:
    """Markdown report of :func:`bench_energy`: one table per system and quantity."""
    lines = ["# Energy benchmark: torch force field vs OpenMM", ""] + [f"- {n}" for n in notes] + [""]
    for (system, quantity), group in frame.groupby(["system", "quantity"], sort=False):
        batches = sorted(group.batch.unique())
        lines += [f"## {system}: {quantity}", "",
                  "configurations/s (median ratio to OpenMM Reference, 1 context, in the same rounds; "
                  "range of the per-round ratios)", ""]
        lines.append("| engine | dtype | " + " | ".join(f"batch {b:,}" for b in batches) + " |")
        lines.append("|---|---|" + "---|" * len(batches))
        for (engine, dtype), rows in group.groupby(["engine", "dtype"], sort=False):
            by_batch = rows.set_index("batch")
            cells = [f"{by_batch.configs_per_s[b]:,.0f} ({by_batch.ratio_vs_openmm_reference[b]:.1f}x; "
                     f"{by_batch.ratio_min[b]:.1f}-{by_batch.ratio_max[b]:.1f})" for b in batches]
            lines.append(f"| {engine} | {dtype} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)
