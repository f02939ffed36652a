"""Uncertainty of a statistic: percentile bootstrap confidence intervals, optionally by moving
blocks, and the summary of a metric over training seeds.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from boltzflow.evaluation.arrays import _array, _finite

__all__ = ["BootstrapCI", "bootstrap_ci", "seed_summary"]


class BootstrapCI(NamedTuple):
    """A point estimate and the bounds of its bootstrap confidence interval.

    >>> ci = bootstrap_ci(np.mean, np.arange(10.0), n_boot=200, seed=0)
    >>> ci.estimate, bool(ci.low <= ci.estimate <= ci.high)
    (4.5, True)
    """

    estimate: float
    low: float
    high: float


def _bootstrap_indices(n: int, block: int | None, rng: np.random.Generator) -> np.ndarray:
    if block is None or block == 1:
        return rng.integers(0, n, size=n)
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    return (starts[:, None] + np.arange(block)[None, :]).reshape(-1)[:n]


def bootstrap_ci(statistic: Callable[..., Any], *arrays: Any, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, block: int | None = None) -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``statistic(*arrays)``.

    The arrays (numpy-convertible, equal length ``N`` along the first axis) are resampled
    *together* by row, ``n_boot`` times, with replacement; ``estimate`` is the statistic of the
    original data and ``(low, high)`` are the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the resampled statistics. With ``block = L`` the rows are drawn as ``ceil(N / L)``
    runs of ``L`` consecutive rows starting at uniform positions (moving-block bootstrap, for
    time-correlated series such as MD; choose ``L`` well above the correlation time), truncated to
    ``N`` rows. Errors raised by ``statistic`` propagate; a non-finite replicate raises
    ``ValueError`` with the count. Example: ``bootstrap_ci(free_energy_from_populations, in_a, in_b)``.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    data = [_array(a, dtype=None) for a in arrays]
    if any(d.ndim == 0 for d in data):
        raise ValueError(f"arrays have shapes {[d.shape for d in data]}, expected (N, ...) each")
    n = data[0].shape[0]
    if n == 0 or any(d.shape[0] != n for d in data):
        raise ValueError(f"arrays have shapes {[d.shape for d in data]}, expected the same (N, ...) with N >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if block is not None and not 1 <= block <= n:
        raise ValueError(f"block must be in [1, {n}], got {block!r}")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(*data))
    replicates = np.empty(n_boot)
    for i in range(n_boot):
        idx = _bootstrap_indices(n, block, rng)
        replicates[i] = float(statistic(*(d[idx] for d in data)))
    bad = int((~np.isfinite(replicates)).sum())
    if bad:
        raise ValueError(f"{bad} of {n_boot} bootstrap replicates of the statistic are not finite")
    low, high = np.quantile(replicates, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return BootstrapCI(estimate, float(low), float(high))


def seed_summary(values: Any, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> dict[str, float | int]:
    """Mean of a metric over training seeds with a percentile bootstrap CI of the mean.

    ``values`` has shape ``(n_seeds,)`` and must be finite. Returns ``{"mean", "low", "high", "n"}``;
    for a single seed ``low = high = mean`` (no spread can be estimated).
    """
    v = _finite(values, "values", "(n_seeds,)", 1)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    means = v[np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return {"mean": mean, "low": float(low), "high": float(high), "n": int(v.size)}
