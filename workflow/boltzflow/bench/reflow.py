"""The ODE solver of reflow pairs, chosen by measurement: each solver's pair error against a tight
adaptive solve of the same prior draws, and its pairs per second, side by side.

A RegFlow student regresses onto the teacher's pairs, so a pair error well below the student's
own regression error costs nothing, and the fastest solver that reaches it is the one to use for
millions of pairs. :func:`bench_reflow` integrates the same prior draws with every solver and
with the reference (``dopri5`` at a tight tolerance), and reports the RMS error per dimension,
the largest error of any pair, the velocity evaluations and the throughput.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from boltzflow.cnf import ADAPTIVE_METHODS, FIXED_STEP_METHODS, integrate

__all__ = ["bench_reflow", "solver_label"]


def solver_label(solver: Mapping[str, Any]) -> str:
    """``dopri5 tol 1e-05`` or ``rk4 x 20``: a solver setting as one short name."""
    method = solver["method"]
    if method in ADAPTIVE_METHODS:
        return f"{method} tol {float(solver.get('tol', 1e-5)):g}"
    return f"{method} x {int(solver['steps'])}"


def _solve(model: torch.nn.Module, x0: torch.Tensor, solver: Mapping[str, Any],
           batch_size: int) -> tuple[torch.Tensor, dict[str, float]]:
    method = solver["method"]
    if method not in ADAPTIVE_METHODS + FIXED_STEP_METHODS:
        raise ValueError(f"unknown solver method {method!r}; known: {', '.join(ADAPTIVE_METHODS + FIXED_STEP_METHODS)}")
    if method in FIXED_STEP_METHODS and int(solver.get("steps", 0)) < 1:
        raise ValueError(f"a fixed-step solver ({method}) needs steps >= 1, got {solver.get('steps')!r}")
    tol = float(solver.get("tol", 1e-5))
    stats: dict[str, float] = {}
    start = time.perf_counter()
    x1 = integrate(model, x0, method=method, atol=tol, rtol=tol, steps=int(solver.get("steps", 100)),
                   batch_size=batch_size, stats=stats)
    per_batch = stats.get("nfe_per_batch") or [np.nan]
    return x1, {"seconds": time.perf_counter() - start, "nfe_per_batch": float(np.mean(per_batch))}


def bench_reflow(model: torch.nn.Module, *, n_pairs: int, solvers: Sequence[Mapping[str, Any]],
                 reference_tol: float = 1e-8, batch_size: int = 1024, seed: int = 0,
                 log: logging.Logger | None = None) -> pd.DataFrame:
    """One row per solver: pair error against the reference solve and pairs per second.

    ``n_pairs`` seeded prior draws ``N(0, I)`` are integrated by each solver (``{"method", "tol"}``
    for an adaptive torchdiffeq method, ``{"method", "steps"}`` for a fixed-step one) and by
    ``dopri5`` with ``atol = rtol = reference_tol``. The errors are in float64 over the float32
    end points: ``rms_error_per_dim = sqrt(mean_i ||x1_i - x1_ref_i||^2 / d)`` and ``max_error`` (the
    largest ``||x1_i - x1_ref_i||``). ``speedup_vs_reference`` is the reference's seconds over the
    solver's, measured in this run. The last row is the reference itself.
    """
    log = log or logging.getLogger("boltzflow.bench")
    if n_pairs < 1 or not solvers:
        raise ValueError(f"bench_reflow needs n_pairs >= 1 and at least one solver, got {n_pairs} and {len(solvers)}")
    dtype = next(model.parameters()).dtype
    x0 = torch.randn(n_pairs, model.dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    _solve(model, x0[: min(8, n_pairs)], solvers[0], batch_size)          # warm-up, not timed
    reference_solver = {"method": "dopri5", "tol": reference_tol}
    reference, ref_stats = _solve(model, x0, reference_solver, batch_size)
    reference = reference.double()
    rows = []
    for solver in [*solvers, reference_solver]:
        if solver is reference_solver:
            x1, stats = reference, ref_stats
        else:
            x1, stats = _solve(model, x0, solver, batch_size)
        error = (x1.double() - reference).norm(dim=1)
        row = {"solver": solver_label(solver), "method": solver["method"],
               "tol": float(solver["tol"]) if solver["method"] in ADAPTIVE_METHODS else np.nan,
               "steps": int(solver["steps"]) if solver["method"] in FIXED_STEP_METHODS else np.nan,
               "n_pairs": n_pairs, "dim": model.dim, "nfe_per_batch": stats["nfe_per_batch"],
               "seconds": stats["seconds"], "pairs_per_s": n_pairs / stats["seconds"],
               "rms_error_per_dim": float(error.square().mean().div(model.dim).sqrt()),
               "max_error": float(error.max()),
               "speedup_vs_reference": ref_stats["seconds"] / stats["seconds"]}
        log.info("%s: %.3g RMS error per dimension, %.0f pairs/s (%.1fx the reference)", row["solver"],
                 row["rms_error_per_dim"], row["pairs_per_s"], row["speedup_vs_reference"])
        rows.append(row)
    return pd.DataFrame(rows)
