"""How far RegFlow's regression onto batch-OT pairs can fall, against the OT batch size: the
spread of one prior point's partners over independent exact OT batches (:func:`bench_ot_floor`).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import pandas as pd

from boltzflow.couplings import ot_permutation

__all__ = ["bench_ot_floor"]


def bench_ot_floor(x1: np.ndarray, batch_sizes: Sequence[int], *, queries: int, repeats: int, seed: int = 0,
                   log: logging.Logger | None = None) -> pd.DataFrame:
    """One row per batch size: the regression floor of batch-OT pairs between ``N(0, I)`` and the
    points ``x1`` ``(N, d)`` (latent data), per dimension, with its standard error over the queries.

    A RegFlow flow learns ``x0 -> x1`` by least squares on pairs. If the pairing is not a function
    of ``x0`` -- and an OT plan solved on a random batch is not: the same prior point gets another
    partner in another batch -- the loss cannot fall below the conditional variance
    ``E ||x1 - E[x1 | x0]||^2``, and the flow learns the conditional mean, a contracted map. Here
    ``queries`` fixed prior points are put into ``repeats`` batches of each size (the rest of each
    batch fresh prior draws and a fresh random subset of ``x1``), each batch is solved exactly
    (:func:`~boltzflow.couplings.ot_permutation`), and the spread of each point's partners over the
    batches is its conditional variance. Independent pairing has the data's total variance as its
    floor; an OT coupling that became a function as the batch grows would take it to 0.

    Columns: ``batch_size``, ``repeats``, ``queries``, ``floor_per_dim`` (mean over queries of the
    unbiased variance of the query's partners over the repeats, summed over dimensions, over ``d``),
    ``floor_se``, ``independent_per_dim`` (the floor of independent pairing: the data's total
    variance over ``d``), ``ratio_vs_independent``, ``pair_sq_distance`` (mean squared distance
    per pair of the OT batches, over ``d``), ``solve_s`` (median seconds per exact solve).
    """
    log = log or logging.getLogger("boltzflow.bench")
    x1 = np.asarray(x1, dtype=np.float64)
    if x1.ndim != 2 or not np.isfinite(x1).all():
        raise ValueError(f"latent data must be a finite (N, d) array, got shape {x1.shape}")
    n, dim = x1.shape
    if repeats < 2 or queries < 1:
        raise ValueError(f"the floor needs repeats >= 2 and queries >= 1, got {repeats} and {queries}")
    bad = [b for b in batch_sizes if not queries < b <= n]
    if bad:
        raise ValueError(f"OT batch sizes must exceed the {queries} queries and fit the {n} data points, got {bad}")
    rng = np.random.default_rng(seed)
    query = rng.standard_normal((queries, dim))
    independent = float(x1.var(axis=0, ddof=1).sum() / dim)
    rows = []
    for batch in batch_sizes:
        partners = np.empty((repeats, queries, dim))
        seconds, distances = [], []
        for r in range(repeats):
            x0 = np.concatenate([query, rng.standard_normal((batch - queries, dim))])
            data = x1[rng.choice(n, size=batch, replace=False)]
            perm, solve_s = ot_permutation(x0, data)
            partners[r] = data[perm[:queries]]
            seconds.append(solve_s)
            distances.append(float(((x0 - data[perm]) ** 2).sum(axis=1).mean() / dim))
        spread = partners.var(axis=0, ddof=1).sum(axis=1) / dim         # (queries,)
        rows.append({"batch_size": int(batch), "repeats": int(repeats), "queries": int(queries),
                     "floor_per_dim": float(spread.mean()), "floor_se": float(spread.std(ddof=1) / np.sqrt(queries))
                     if queries > 1 else float("nan"),
                     "independent_per_dim": independent, "ratio_vs_independent": float(spread.mean()) / independent,
                     "pair_sq_distance": float(np.mean(distances)), "solve_s": float(np.median(seconds))})
        log.info("OT batch %d: regression floor %.3f per dimension (independent pairing %.3f), %.1f s per solve",
                 batch, rows[-1]["floor_per_dim"], independent, rows[-1]["solve_s"])
    return pd.DataFrame(rows)
