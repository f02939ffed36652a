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

__all__ = ["split_rhat", "initial_positive_sequence_tau", "integrated_autocorrelation_time"]


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


def split_rhat(chains: Any, *, rank_normalised: bool = True) -> np.ndarray:
    """Rank-normalised split R-hat of each coordinate, shape ``(d,)``, float64.

    ``chains`` has shape ``(M, N, d)`` (M chains of N draws; ``(M, N)`` for one coordinate), with
    ``M >= 1`` and ``N >= 4``. Each chain is cut into two halves (the middle draw dropped when N is
    odd), all draws are replaced by the normal scores of their pooled ranks, and the classic
    ``sqrt(var_plus / W)`` is taken; the same is done for the folded draws ``|x - median|``, and
    the larger value is returned. Values near 1 (below ~1.01) mean the chains agree; chains stuck
    in different modes give large values. The statistic is invariant under monotone maps of each
    coordinate. With ``rank_normalised=False`` it is the classic split R-hat of the raw draws
    (no ranks, no folding), which the reference sampler reports for its energy traces.
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
    if not rank_normalised:
        return _classic_rhat(split)
    bulk = _classic_rhat(_rank_normalise(split))
    folded = np.abs(split - np.median(split.reshape(-1, split.shape[2]), axis=0))
    tail = _classic_rhat(_rank_normalise(folded))
    return np.maximum(bulk, tail)


def initial_positive_sequence_tau(rho: np.ndarray) -> float:
    """Integrated autocorrelation time ``1 + 2 sum_k rho_k`` from the normalised autocorrelation
    ``rho`` (``rho[0] = 1``), summed over Geyer's initial positive sequence: pairs
    ``rho_{2m} + rho_{2m+1}`` are added while they are positive."""
    tau = -1.0
    for k in range(0, len(rho) - 1, 2):
        pair = rho[k] + rho[k + 1]
        if pair <= 0.0:
            break
        tau += 2.0 * pair
    return float(tau)


def integrated_autocorrelation_time(values: Any, lengths: Any = None) -> float:
    """Integrated autocorrelation time, in draws, of independent chains of one scalar.

    ``values`` is either an array ``(n_steps, n_chains)`` of equal-length chains, or, with
    ``lengths``, the chains concatenated into one 1-D array (chain ``c`` holds ``lengths[c]``
    consecutive values). The autocovariance of each chain is taken around the pooled mean, summed
    over chains, divided by the total number of draws, and summed over Geyer's initial positive
    sequence (:func:`initial_positive_sequence_tau`). Returns NaN for a constant series and 1.0
    when every chain has a single draw; values below 1 are possible for antithetic chains.

    >>> x = np.repeat(np.arange(50.0) % 2, 2)[:, None].repeat(3, axis=1)  # 0, 0, 1, 1, 0, 0, ...
    >>> round(integrated_autocorrelation_time(x), 3)
    1.02
    """
    values = np.asarray(values, dtype=np.float64)
    if lengths is None:
        if values.ndim != 2:
            raise ValueError(f"values must have shape (n_steps, n_chains) without lengths, got {values.shape}")
        lengths = np.full(values.shape[1], values.shape[0])
        values = values.T.reshape(-1)  # chain after chain, as with explicit lengths
    lengths = np.asarray(lengths, dtype=np.int64)
    if values.ndim != 1 or int(lengths.sum()) != len(values):
        raise ValueError(f"values of shape {values.shape} do not split into chains of lengths summing to "
                         f"{int(lengths.sum())}")
    n_total = len(values)
    centred = values - values.mean()
    if n_total < 2 or not np.any(centred):
        return float("nan")
    max_len = int(lengths.max())
    acov = np.zeros(max_len)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    # chains of one length share one batched FFT
    for n in np.unique(lengths):
        rows = np.stack([centred[s : s + n] for s, m in zip(starts, lengths) if m == n])
        f = np.fft.rfft(rows, n=2 * int(n), axis=1)
        acov[:n] += np.fft.irfft(f * np.conj(f), n=2 * int(n), axis=1)[:, :n].sum(axis=0)
    acov /= n_total
    if max_len < 2:  # one draw per chain: no lag to correlate over
        return 1.0
    return initial_positive_sequence_tau(acov / acov[0])
