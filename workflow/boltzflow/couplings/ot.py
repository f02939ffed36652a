"""Regression pairs ``(x0, x1)`` for RegFlow: exact optimal-transport couplings and CNF reflow.

Both kinds pair prior draws ``x0 ~ N(0, I_d)`` with points ``x1`` in the flow's latent
coordinates (see :mod:`boltzflow.flows.cartesian`):

- **OT** (:func:`ot_pairs`): the training data are shuffled and cut into batches of ``n``; each
  batch is paired with ``n`` fresh prior draws by the exact discrete optimal transport plan for
  the squared Euclidean cost (POT ``ot.emd``, a network simplex, O(n^3) time and O(n^2) memory).
  With equal uniform marginals the optimal plan is a permutation matrix (Birkhoff), so each prior
  draw gets exactly one data point; this is asserted (a plan that is not a permutation, e.g. from
  mixed float32/float64 marginals, POT issue #342, is an error rather than silently wrong pairs).
- **Reflow** (:func:`cnf_pairs`): prior draws pushed through a trained flow-matching CNF
  (:mod:`boltzflow.cnf`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from boltzflow.cnf import integrate

__all__ = ["ot_pairs", "ot_permutation", "cnf_pairs"]


def ot_permutation(x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, float]:
    """The optimal assignment ``perm`` (``x0[i]`` pairs with ``x1[perm[i]]``) minimising
    ``sum_i ||x0_i - x1_perm(i)||^2``, from POT's exact solver, and the solve time in seconds."""
    import ot

    x0 = np.ascontiguousarray(x0, dtype=np.float64)
    x1 = np.ascontiguousarray(x1, dtype=np.float64)
    if x0.shape != x1.shape or x0.ndim != 2:
        raise ValueError(f"OT needs two (n, d) arrays of the same shape, got {x0.shape} and {x1.shape}")
    n = len(x0)
    cost = ot.dist(x0, x1, metric="sqeuclidean")
    weights = np.full(n, 1.0 / n)
    start = time.perf_counter()
    plan, info = ot.emd(weights, weights, cost, numItermax=max(100_000, 100 * n * n), log=True)
    seconds = time.perf_counter() - start
    if info.get("warning"):
        raise RuntimeError(f"POT emd did not converge on a batch of {n}: {info['warning']}")
    perm = plan.argmax(axis=1)
    # a permutation plan has one entry 1/n per row and every column used once
    if not (np.allclose(plan[np.arange(n), perm], 1.0 / n, rtol=1e-6, atol=0)
            and np.unique(perm).size == n):
        raise RuntimeError(f"POT emd returned a plan that is not a permutation on a batch of {n}")
    return perm, seconds


def ot_pairs(
    x1: np.ndarray,
    *,
    batch_size: int,
    n_pairs: int | None = None,
    seed: int = 0,
    log: logging.Logger | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Exact-OT pairs for data ``x1`` ``(N, d)`` (latent coordinates).

    The data are shuffled (seeded) and cut into batches of ``batch_size`` (the last, short batch
    is solved on its own); ``n_pairs`` (default ``N``) pairs are made, cycling through reshuffled
    copies of the data when ``n_pairs > N``, each time with new prior draws. Returns ``x0``, the
    matching ``x1`` (both float32 ``(n_pairs, d)``) and timings: the total and largest solve time
    and the mean squared transport cost per pair before and after matching.
    """
    log = log or logging.getLogger("boltzflow.couplings")
    x1 = np.asarray(x1)
    if x1.ndim != 2 or len(x1) < 2:
        raise ValueError(f"OT pairs need data of shape (N >= 2, d), got {x1.shape}")
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    n_pairs = len(x1) if n_pairs is None else int(n_pairs)
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    rng = np.random.default_rng(seed)
    out0, out1 = [], []
    total, slowest, cost_before, cost_after, done = 0.0, 0.0, 0.0, 0.0, 0
    start = time.time()
    while done < n_pairs:
        order = rng.permutation(len(x1))
        for first in range(0, len(order), batch_size):
            take = min(batch_size, n_pairs - done)
            if take <= 0:
                break
            data = x1[order[first:first + take]].astype(np.float64)
            if len(data) < 2:  # a batch of one is its own (trivial) assignment
                prior = rng.standard_normal(data.shape)
                perm, seconds = np.zeros(1, dtype=np.int64), 0.0
            else:
                prior = rng.standard_normal(data.shape)
                perm, seconds = ot_permutation(prior, data)
            matched = data[perm]
            cost_before += float(np.sum((prior - data) ** 2))
            cost_after += float(np.sum((prior - matched) ** 2))
            total += seconds
            slowest = max(slowest, seconds)
            out0.append(prior.astype(np.float32))
            out1.append(matched.astype(np.float32))
            done += len(data)
            log.info("OT batch of %d solved in %.2f s; %d/%d pairs (%.0f%%), %.0f s elapsed", len(data), seconds,
                     done, n_pairs, 100.0 * done / n_pairs, time.time() - start)
    stats = {"solve_seconds_total": total, "solve_seconds_max_batch": slowest,
             "mean_sq_cost_independent": cost_before / done, "mean_sq_cost_ot": cost_after / done,
             "batch_size": float(batch_size)}
    return np.concatenate(out0), np.concatenate(out1), stats


def cnf_pairs(
    model: torch.nn.Module,
    n_pairs: int,
    *,
    batch_size: int = 4096,
    seed: int = 0,
    method: str = "dopri5",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    log: logging.Logger | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Reflow pairs: ``n_pairs`` prior draws ``x0`` and their images ``x1`` under the CNF's flow
    map (integrated from t = 0 to 1 in batches)."""

    log = log or logging.getLogger("boltzflow.couplings")
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    out0, out1 = [], []
    start = time.time()
    done = 0
    while done < n_pairs:
        take = min(batch_size, n_pairs - done)
        x0 = torch.randn(take, model.dim, generator=gen, dtype=dtype)
        x1 = integrate(model, x0, method=method, atol=atol, rtol=rtol, batch_size=batch_size)
        out0.append(x0.numpy().astype(np.float32))
        out1.append(x1.numpy().astype(np.float32))
        done += take
        elapsed = time.time() - start
        log.info("reflow pairs %d/%d (%.0f%%), %.0f pairs/s, ETA %.0f s", done, n_pairs, 100.0 * done / n_pairs,
                 done / elapsed, (n_pairs - done) * elapsed / done)
    return np.concatenate(out0), np.concatenate(out1), {"seconds": time.time() - start}
