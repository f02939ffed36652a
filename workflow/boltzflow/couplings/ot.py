"""Exact optimal-transport pairs ``(x0, x1)`` between two point sets, batch by batch (POT ``ot.emd``).

With equal uniform marginals the optimal plan for the squared Euclidean cost is a permutation
(Birkhoff), so each ``x0`` gets exactly one ``x1``; a plan that is not a permutation (e.g. from
mixed float32/float64 marginals, POT issue #342) is an error rather than silently wrong pairs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

__all__ = ["ot_pairs", "ot_permutation", "as_points"]


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


class _Stream:
    """Indices into ``n`` points, one seeded reshuffled pass after another, read across passes."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.order, self.pos = n, rng, rng.permutation(n), 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos == self.n:
                self.order, self.pos = self.rng.permutation(self.n), 0
            step = min(k, self.n - self.pos)
            out.append(self.order[self.pos:self.pos + step])
            self.pos += step
            k -= step
        return np.concatenate(out)


def _prior_batches(x1: np.ndarray, batch_size: int, n_pairs: int, rng: np.random.Generator):
    """Batches ``(prior draws, data)``: each pass over a fresh shuffle of ``x1`` is cut into
    batches (the last one short), with new standard-normal draws for every batch."""
    done = 0
    while done < n_pairs:
        order = rng.permutation(len(x1))
        for first in range(0, len(order), batch_size):
            take = min(batch_size, n_pairs - done)
            if take <= 0:
                break
            data = x1[order[first:first + take]].astype(np.float64)
            yield rng.standard_normal(data.shape), data
            done += len(data)


def _point_batches(x0: np.ndarray, x1: np.ndarray, batch_size: int, n_pairs: int, rng: np.random.Generator):
    """Batches ``(x0 points, x1 points)`` of ``batch_size``, each set read as a stream of seeded
    passes, so the smaller set's points are reused with other partners."""
    stream0, stream1 = _Stream(len(x0), rng), _Stream(len(x1), rng)
    done = 0
    while done < n_pairs:
        take = min(batch_size, n_pairs - done)
        yield x0[stream0.take(take)], x1[stream1.take(take)]
        done += take


def ot_pairs(
    x1: np.ndarray,
    *,
    x0: np.ndarray | None = None,
    batch_size: int,
    n_pairs: int | None = None,
    seed: int = 0,
    dtype: type = np.float32,
    log: logging.Logger | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Exact-OT pairs between ``x1`` ``(N1, d)`` and either prior draws or the points ``x0`` ``(N0, d)``.

    Each batch of ``batch_size`` ``x0``'s and as many ``x1``'s is matched by :func:`ot_permutation`,
    minimising ``sum_i ||x0_i - x1_perm(i)||^2``. Without ``x0`` (prior-data pairs for RegFlow) the
    data are shuffled (seeded) and cut into batches, the last short batch solved on its own, each
    paired with fresh ``N(0, I)`` draws, cycling through reshuffled copies when ``n_pairs > N1``;
    ``n_pairs`` defaults to ``N1``. With ``x0`` (state-state pairs, e.g. for targeted FEP) both sets
    are read as streams of seeded passes and ``n_pairs`` defaults to ``max(N0, N1)``. Returns
    ``x0`` and the matching ``x1`` as ``dtype`` ``(n_pairs, d)`` and statistics: the total and
    largest solve time and the mean squared distance per pair before and after matching.
    """
    log = log or logging.getLogger("boltzflow.couplings")
    if x0 is None:
        x1 = np.asarray(x1)
        if x1.ndim != 2 or len(x1) < 2:
            raise ValueError(f"OT pairs need data of shape (N >= 2, d), got {x1.shape}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {batch_size}")
        n_pairs = len(x1) if n_pairs is None else int(n_pairs)
    else:
        x0 = as_points(x0, "x0 points")
        x1 = as_points(x1, "x1 points", x0.shape[1])
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n_pairs = max(len(x0), len(x1)) if n_pairs is None else int(n_pairs)
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    rng = np.random.default_rng(seed)
    batches = (_prior_batches(x1, batch_size, n_pairs, rng) if x0 is None
               else _point_batches(x0, x1, batch_size, n_pairs, rng))
    out0, out1 = [], []
    total, slowest, cost_before, cost_after, done = 0.0, 0.0, 0.0, 0.0, 0
    start = time.time()
    for a, b in batches:
        if len(a) < 2:  # a batch of one is its own (trivial) assignment
            perm, seconds = np.zeros(1, dtype=np.int64), 0.0
        else:
            perm, seconds = ot_permutation(a, b)
        matched = b[perm]
        cost_before += float(np.sum((a - b) ** 2))
        cost_after += float(np.sum((a - matched) ** 2))
        total += seconds
        slowest = max(slowest, seconds)
        out0.append(a.astype(dtype, copy=False))
        out1.append(matched.astype(dtype, copy=False))
        done += len(a)
        log.info("OT batch of %d solved in %.2f s; %d/%d pairs (%.0f%%), %.0f s elapsed", len(a), seconds,
                 done, n_pairs, 100.0 * done / n_pairs, time.time() - start)
    stats = {"solve_seconds_total": total, "solve_seconds_max_batch": slowest,
             "mean_sq_cost_independent": cost_before / done, "mean_sq_cost_ot": cost_after / done,
             "batch_size": float(batch_size)}
    return np.concatenate(out0), np.concatenate(out1), stats


def as_points(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a finite, non-empty float64 ``(n, d)`` array, or an error naming it."""
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = a.astype(np.float64, copy=False)
    expected = "(n, d)" if dim is None else f"(n, {dim})"
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        raise ValueError(f"{name} has shape {a.shape}, expected {expected}")
    if len(a) == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has {int((~np.isfinite(a)).any(axis=1).sum())} rows with non-finite values")
    return a
