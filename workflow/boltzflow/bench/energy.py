"""Energy benchmark: configurations per second of the torch force field against OpenMM.

:func:`bench_energy` times energies and energies with forces of the same configurations on the
torch target (float32 and float64) and on OpenMM contexts, pairing the rates round by round;
:func:`energy_markdown` writes the report.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from boltzflow.targets import load_target
from boltzflow.targets.openmm_pool import OpenMMPool

__all__ = ["bench_energy", "energy_markdown"]


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
