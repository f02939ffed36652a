"""MCMC convergence diagnostics: the rank-normalised split R-hat (Vehtari, Gelman, Simpson,
Carpenter and Buerkner, "Rank-normalization, folding, and localization: an improved R-hat",
Bayesian Analysis 2021) and the integrated autocorrelation time summed over Geyer's initial
positive sequence (Geyer, "Practical Markov chain Monte Carlo", Statistical Science 1992).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["split_rhat"]


# MCMC convergence
# --------------------------------------------------------------------------------------------


def _classic_rhat(chains: np.ndarray) -> np.ndarray:
    """Potential scale reduction of ``chains`` shaped ``(M, N, d)`` (no splitting, no ranks)."""
    n = chains.shape[1]
    within = chains.var(axis=1, ddof=1).mean(axis=0)
    between_over_n = chains.mean(axis=1).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * within + between_over_n
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(var_plus / within)
    # Constant chains: identical values everywhere mix trivially; different constants never do.
    return np.where(within > 0, rhat, np.where(between_over_n > 0, np.inf, 1.0))


def _rank_normalise(chains: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (average ranks for ties), chain shape kept."""
    m, n, d = chains.shape
    ranks = rankdata(chains.reshape(m * n, d), axis=0, method="average")
    return ndtri((ranks - 0.375) / (m * n + 0.25)).reshape(m, n, d)


def split_rhat(chains: Any) -> np.ndarray:
    """Rank-normalised split R-hat of each coordinate, shape ``(d,)``, float64.

    ``chains`` has shape ``(M, N, d)`` (M chains of N draws; ``(M, N)`` for one coordinate), with
    ``M >= 1`` and ``N >= 4``. Each chain is cut into two halves (the middle draw dropped when N is
    odd), all draws are replaced by the normal scores of their pooled ranks, and the classic
    ``sqrt(var_plus / W)`` is taken; the same is done for the folded draws ``|x - median|``, and
    the larger value is returned. Values near 1 (below ~1.01) mean the chains agree; chains stuck
    in different modes give large values. The statistic is invariant under monotone maps of each
    coordinate.
    """
    x = np.asarray(chains, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"chains must have shape (M, N, d) or (M, N), got {x.shape}")
    if x.shape[1] < 4:
        raise ValueError(f"split R-hat needs at least 4 draws per chain, got {x.shape[1]}")
    if not np.isfinite(x).all():
        raise ValueError(f"chains hold {int((~np.isfinite(x)).sum())} non-finite values")
    half = x.shape[1] // 2
    split = np.concatenate([x[:, :half], x[:, -half:]], axis=0)
    bulk = _classic_rhat(_rank_normalise(split))
    folded = np.abs(split - np.median(split.reshape(-1, split.shape[2]), axis=0))
    tail = _classic_rhat(_rank_normalise(folded))
    return np.maximum(bulk, tail)
