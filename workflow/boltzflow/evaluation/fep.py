"""Free energies between two states in units of kT: from (weighted) state populations,
``dF = -log(p_B / p_A)``, and by Zwanzig / targeted free-energy perturbation,
``dF = -log mean(exp(-work))``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from boltzflow.evaluation.arrays import _array, _log_weights
from boltzflow.evaluation.statistics import bootstrap_ci
from boltzflow.evaluation.weights import kish_ess

__all__ = ["free_energy_from_populations", "fep_free_energy", "md_free_energy", "tfep_estimate"]


# --------------------------------------------------------------------------------------------
# Free energies
# --------------------------------------------------------------------------------------------


def _indicator(values: Any, name: str, n: int | None = None) -> np.ndarray:
    a = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    expected = "(N,)" if n is None else f"({n},)"
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name} has shape {a.shape}, expected {expected} booleans")
    if a.dtype != np.bool_:
        raise ValueError(f"{name} must be boolean state indicators, got dtype {a.dtype}")
    return a


def free_energy_from_populations(in_a: Any, in_b: Any, *, log_w: Any = None) -> float:
    """Free energy of state B relative to A from populations: ``dF = -log(p_B / p_A)`` (kT).

    ``in_a`` and ``in_b`` are boolean indicators of shape ``(N,)``. Unweighted, ``p`` are the
    fractions of samples in each state, so ``dF = -log(n_B / n_A)``. With log importance weights
    ``log_w`` (shape ``(N,)``; ``-inf`` counts as 0) they are the self-normalised weighted
    fractions, ``dF = -(logsumexp(log_w[in_b]) - logsumexp(log_w[in_a]))``. Raises ``ValueError``
    if a state holds no sample (or only samples of weight 0).
    """
    a = _indicator(in_a, "in_a")
    b = _indicator(in_b, "in_b", len(a))
    lw = np.zeros(len(a)) if log_w is None else _log_weights(log_w, "log_w", len(a))
    log_p = {}
    for label, mask in (("A", a), ("B", b)):
        if not mask.any():
            raise ValueError(f"state {label} is empty: no sample among {len(a)} falls in it")
        log_p[label] = logsumexp(lw[mask])
        if log_p[label] == -np.inf:
            raise ValueError(f"state {label} has total weight 0: its {int(mask.sum())} samples all have "
                             "log-weight -inf")
    return float(-(log_p["B"] - log_p["A"]))


def fep_free_energy(work: Any) -> float:
    """Zwanzig free-energy perturbation: ``dF = F_B - F_A = -log mean(exp(-work))`` (kT).

    Plain FEP: ``work = u_B(x) - u_A(x)`` for ``x ~ A`` (reduced energies). Targeted FEP through
    an invertible map ``M``: ``work = u_B(M(x)) - u_A(x) - log|det J_M(x)|`` for ``x ~ A``; the
    estimate is exact (zero variance) when ``M`` pushes A onto B. The caller computes the work;
    this function evaluates ``-(logsumexp(-work) - log N)`` in float64. ``work = +inf`` counts as
    a zero contribution (all ``+inf`` gives ``+inf``); NaN or ``-inf`` work raises ``ValueError``.
    Like :func:`log_z_importance` the estimate is biased (here upwards) for finite ``N``.
    """
    w = _array(work)
    if w.ndim != 1:
        raise ValueError(f"work has shape {w.shape}, expected (N,)")
    if np.isneginf(w).any() or np.isnan(w).any():
        raise ValueError(f"work: {int(np.isnan(w).sum())} NaN and {int(np.isneginf(w).sum())} -inf values "
                         f"among {w.size}; drop or fix them first (and report how many)")
    lw = _log_weights(-w, "work")
    return float(-(logsumexp(lw) - math.log(lw.size)))


def md_free_energy(in_a: Any, in_b: Any, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                   block: int | None = None) -> dict[str, float]:
    """The population estimate ``dF = -log(p_B / p_A)`` (kT) of equilibrium frames with a
    (block-)bootstrap interval (:func:`boltzflow.evaluation.bootstrap_ci`; pass ``block`` well
    above the correlation time for MD frames in time order)."""
    ci = bootstrap_ci(free_energy_from_populations, np.asarray(in_a), np.asarray(in_b), n_boot=n_boot,
                      level=level, seed=seed, block=block)
    return {"dF": ci.estimate, "low": ci.low, "high": ci.high, "n": int(len(np.asarray(in_a))),
            "n_a": int(np.sum(in_a)), "n_b": int(np.sum(in_b))}


def tfep_estimate(work: Any, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                  block: int | None = None) -> dict[str, Any]:
    """The TFEP free energy of works ``W`` (``(N,)``, ``+inf`` allowed) with a bootstrap interval.

    Returns ``dF = -log mean(exp(-W))`` (kT, :func:`boltzflow.evaluation.fep_free_energy`), the
    percentile bootstrap interval ``low``, ``high`` at ``level`` (:func:`~boltzflow.evaluation.
    bootstrap_ci`; ``block`` for time-ordered samples), ``n``, ``n_infinite`` (samples with
    ``W = +inf``), ``ess`` (the normalised Kish effective sample size of ``exp(-W)``), and the
    mean and standard deviation of the finite works. When so many works are infinite that a
    bootstrap replicate has none finite, that replicate is ``+inf`` and the interval's upper end
    may be ``+inf``.
    """
    w = work.detach().cpu().numpy() if isinstance(work, torch.Tensor) else np.asarray(work)
    w = w.astype(np.float64)
    if w.ndim != 1:
        raise ValueError(f"work has shape {w.shape}, expected (N,)")
    if w.size == 0:
        raise ValueError("work is empty")
    if np.isnan(w).any() or np.isneginf(w).any():
        raise ValueError(f"work: {int(np.isnan(w).sum())} NaN and {int(np.isneginf(w).sum())} -inf values among "
                         f"{w.size}; tfep_work marks bad samples +inf, so these came from elsewhere")
    finite = np.isfinite(w)
    out: dict[str, Any] = {"n": int(w.size), "n_infinite": int((~finite).sum()), "level": float(level),
                           "n_boot": int(n_boot),
                           "work_mean": float(w[finite].mean()) if finite.any() else math.inf,
                           "work_std": float(w[finite].std()) if finite.any() else math.nan}
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if block is not None and not 1 <= block <= w.size:
        raise ValueError(f"block must be in [1, {w.size}], got {block!r}")
    if not finite.any():
        return {**out, "dF": math.inf, "low": math.inf, "high": math.inf, "ess": 0.0}
    try:
        ci = bootstrap_ci(fep_free_energy, w, n_boot=n_boot, level=level, seed=seed, block=block)
        estimate, low, high = ci.estimate, ci.low, ci.high
    except ValueError:  # the arguments are checked above, so only an infinite replicate gets here
        # some replicate drew only infinite works (dF = +inf), which bootstrap_ci refuses; the
        # same percentile interval, read off the empirical quantiles so that +inf stays +inf
        rng = np.random.default_rng(seed)
        reps = np.empty(n_boot)
        for i in range(n_boot):
            if block is None or block == 1:
                idx = rng.integers(0, w.size, size=w.size)
            else:
                starts = rng.integers(0, w.size - block + 1, size=-(-w.size // block))
                idx = (starts[:, None] + np.arange(block)[None, :]).reshape(-1)[:w.size]
            reps[i] = fep_free_energy(w[idx])
        estimate = fep_free_energy(w)
        low, high = (float(q) for q in np.quantile(reps, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf"))
    return {**out, "dF": float(estimate), "low": float(low), "high": float(high), "ess": kish_ess(-w)}
