"""Importance weights: the Kish effective sample size, self-normalised importance resampling and
the importance-sampling estimate of a normalising constant, all in float64.

A log-weight of ``-inf`` counts as weight 0 and never makes a function fail; NaN and ``+inf``
log-weights raise ``ValueError`` naming their counts, so that the caller drops them explicitly and
reports how many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from boltzflow.evaluation.arrays import _log_weights

__all__ = ["kish_ess", "Resampled", "snis_resample", "log_z_importance"]


def _rng(generator_or_seed: np.random.Generator | int) -> np.random.Generator:
    if isinstance(generator_or_seed, np.random.Generator):
        return generator_or_seed
    return np.random.default_rng(generator_or_seed)


def kish_ess(log_w: np.ndarray | torch.Tensor) -> float:
    """Normalised Kish ESS in ``[0, 1]`` of unnormalised log importance weights."""
    lw = torch.as_tensor(np.asarray(log_w) if not isinstance(log_w, torch.Tensor) else log_w).to(torch.float64)
    lw = lw.reshape(-1)
    if lw.numel() == 0:
        raise ValueError("no log-weights")
    if torch.isnan(lw).any() or (lw == torch.inf).any():
        raise ValueError(f"{int(torch.isnan(lw).sum())} NaN and {int((lw == torch.inf).sum())} +inf log-weights; "
                         "drop or fix them first (and report how many)")
    if (lw == -torch.inf).all():
        return 0.0
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.numel())


# --------------------------------------------------------------------------------------------
# Importance weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resampled:
    """Result of :func:`snis_resample`: the drawn ``indices`` (int64, shape ``(n,)``) and
    ``n_filtered``, how many samples the quantile filter gave weight 0.

    >>> r = snis_resample(np.array([0.0, -np.inf, 0.0]), 4, generator_or_seed=0)
    >>> r.indices.shape, bool((r.indices != 1).all()), r.n_filtered
    ((4,), True, 0)
    """

    indices: np.ndarray
    n_filtered: int


def snis_resample(log_w: Any, n: int, *, generator_or_seed: np.random.Generator | int,
                  quantile_filter: float = 0.0) -> Resampled:
    """Multinomial resampling of ``N`` weighted samples into ``n`` unweighted ones.

    Index ``i`` is drawn (with replacement) with probability ``softmax(log_w)_i``, computed in
    float64 from the log-weights shifted by their log-sum-exp. ``-inf`` log-weights have
    probability 0; NaN / ``+inf`` raise ``ValueError`` with counts.

    ``quantile_filter = q`` in ``[0, 1)`` first gives weight 0 to the ``floor(q * N)`` samples with
    the largest log-weights (``N`` counts every sample, ``-inf`` ones included; ties at the cut are
    broken by position, the later sample being dropped first). This removes the rare extreme
    weights that would otherwise be drawn many times (q = 0.002 in the Boltzmann-generator papers).

    ``generator_or_seed`` is a ``numpy.random.Generator`` or an integer seed. Returns
    :class:`Resampled`; raises ``ValueError`` if no sample with positive weight is left.
    """
    lw = _log_weights(log_w).copy()
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    q = float(quantile_filter)
    if not 0.0 <= q < 1.0:
        raise ValueError(f"quantile_filter must be in [0, 1), got {quantile_filter!r}")
    n_drop = int(math.floor(q * lw.size))
    if n_drop:
        order = np.argsort(lw, kind="stable")  # ascending; among ties the later index comes last
        lw[order[-n_drop:]] = -np.inf
    if np.isneginf(lw).all():
        raise ValueError(f"all {lw.size} samples have weight 0 (after dropping {n_drop} by the quantile "
                         "filter); nothing to resample")
    p = np.exp(lw - logsumexp(lw))
    p /= p.sum()
    indices = _rng(generator_or_seed).choice(lw.size, size=int(n), replace=True, p=p)
    return Resampled(indices=indices.astype(np.int64), n_filtered=n_drop)


def log_z_importance(log_w: Any) -> float:
    """Importance-sampling estimate of ``log Z``: ``logsumexp(log_w) - log N``.

    With ``log_w = log p~(x) - log q(x)`` for ``x ~ q``, an exactly normalised proposal, and
    ``p~`` the unnormalised target, ``mean(w)`` is an unbiased estimate of ``Z``; its logarithm is
    biased *downwards* for finite ``N`` (Jensen: ``E[log Z_hat] <= log Z``), the more so the
    smaller the ESS. ``-inf`` log-weights count as 0 (all ``-inf`` gives ``-inf``).
    """
    lw = _log_weights(log_w)
    return float(logsumexp(lw) - math.log(lw.size))
