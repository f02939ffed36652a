"""Modes of synthetic targets with known centres: the weight of each mode as the (weighted)
fraction of samples in its Voronoi zone, and the fraction of modes visited at all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import logsumexp

from boltzflow.evaluation.arrays import _finite, _log_weights

__all__ = ["mode_weights", "mode_coverage"]


# --------------------------------------------------------------------------------------------
# Modes of synthetic targets
# --------------------------------------------------------------------------------------------


def _points_and_centres(x: Any, centres: Any) -> tuple[np.ndarray, np.ndarray]:
    c = _finite(centres, "centres", "(K, d)", 2)
    xs = _finite(x, "x", f"(N, {c.shape[1]})", 2)
    if xs.shape[1] != c.shape[1]:
        raise ValueError(f"x has shape {xs.shape}, expected (N, {c.shape[1]}) like centres {c.shape}")
    return xs, c


def _squared_distances(x: np.ndarray, c: np.ndarray, chunk: int = 65_536):
    """Yield ``(rows, d2)`` with the squared distances of chunks of ``x`` to all centres."""
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        yield rows, ((x[rows, None, :] - c[None, :, :]) ** 2).sum(axis=-1)


def mode_weights(x: Any, centres: Any, *, log_w: Any = None) -> np.ndarray:
    """Weight of each mode: the fraction of samples whose nearest centre (Euclidean) it is.

    ``x`` has shape ``(N, d)`` and ``centres`` shape ``(K, d)``; the space is split into the
    Voronoi zones of the centres and the result (shape ``(K,)``, float64, sums to 1) is the share
    of samples in each zone, or with ``log_w`` (shape ``(N,)``) the self-normalised weighted share
    ``sum_{i in zone} softmax(log_w)_i``. Ties go to the first centre.
    """
    xs, c = _points_and_centres(x, centres)
    if log_w is None:
        w = np.full(len(xs), 1.0 / len(xs))
    else:
        lw = _log_weights(log_w, "log_w", len(xs))
        if np.isneginf(lw).all():
            raise ValueError(f"all {lw.size} log-weights are -inf; the weighted shares are undefined")
        w = np.exp(lw - logsumexp(lw))
    zone = np.empty(len(xs), dtype=np.int64)
    for rows, d2 in _squared_distances(xs, c):
        zone[rows] = d2.argmin(axis=1)
    shares = np.bincount(zone, weights=w, minlength=len(c))
    return shares / shares.sum()


def mode_coverage(x: Any, centres: Any, radius: float) -> float:
    """Fraction of the ``K`` centres (shape ``(K, d)``) with at least one sample of ``x``
    (shape ``(N, d)``) at Euclidean distance ``<= radius``."""
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    xs, c = _points_and_centres(x, centres)
    nearest = np.full(len(c), np.inf)
    for _, d2 in _squared_distances(xs, c):
        nearest = np.minimum(nearest, d2.min(axis=0))
    return float((nearest <= radius**2).mean())
