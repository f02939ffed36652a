"""One scoring function for every sampler of the cross-method comparison (equally weighted
samples from MCMC, importance-weighted ones from flows and diffusion samplers) against reference
samples of the target: log Z error, W2, energy W1, ESS and mode weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from boltzflow.evaluation.arrays import _finite
from boltzflow.evaluation.distances import energy_wasserstein, wasserstein2
from boltzflow.evaluation.modes import mode_weights
from boltzflow.evaluation.weights import kish_ess, snis_resample

__all__ = ["score_sample_set"]


def score_sample_set(x: Any, energy: Any, *, reference_x: Any, reference_energy: Any, log_w: Any = None,
                     log_z: float = math.nan, log_z_true: float | None = None, centres: Any = None,
                     well_coordinates: Any = None, n_eval: int = 2000, w2_points: int = 2000, seed: int = 0) -> dict[str, float]:
    """Metrics of a sample set ``x`` ``(N, d)`` with energies ``(N,)`` against reference samples.

    With ``log_w`` (unnormalised log importance weights, ``-inf`` for weight 0) the set is first
    resampled by SNIS to ``n_eval`` points and ``ess`` (normalised Kish) is reported; without, a
    random subset of ``n_eval`` points is used (all of them if fewer) and ``ess`` is NaN. Then:

    - ``w2``: exact-OT 2-Wasserstein distance to the reference (``w2_points`` per side);
    - ``energy_w1``: 1-Wasserstein distance between the energies of the two sets;
    - ``log_z_error``: ``|log_z - log_z_true|`` where both are known (else NaN);
    - with ``centres`` ``(K, d)`` (modes of a mixture): ``mode_tv``, the total-variation distance
      ``0.5 sum_k |w_k - w_k^ref|`` between the samples' and the reference's Voronoi-zone weights
      (the weighted set's own weights, before resampling), and ``modes_found``, the fraction of
      modes holding at least 1 / (10 K) of the samples' weight.
    - with ``well_coordinates`` (indices of coordinates whose sign says which of two wells a point
      is in, as the first coordinate of each pair of Manywell): ``well_tv``, the mean over those
      coordinates of ``|w_left - w_left^ref|``, the error of each double well's left-well weight
      (the weighted set's own weights); a sampler stuck in the major wells scores their minor
      weight (0.15 for Manywell).

    Everything in float64; a sample set whose energies are not all finite keeps only its finite
    rows (their count is ``n_nonfinite``)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, d), got {x.shape}")
    energy = np.asarray(energy, dtype=np.float64).reshape(-1)
    if len(energy) != len(x):
        raise ValueError(f"energy has {len(energy)} rows, x has {len(x)}")
    ok = np.isfinite(energy) & np.isfinite(x).all(axis=1)
    lw = None
    if log_w is not None:
        lw = np.asarray(log_w, dtype=np.float64).reshape(-1)
        if len(lw) != len(x):
            raise ValueError(f"log_w has {len(lw)} rows, x has {len(x)}")
        lw = np.where(ok, lw, -np.inf)
    n_nonfinite = int((~ok).sum())
    x_ref = _finite(reference_x, "reference_x", "(M, d)", 2)
    e_ref = _finite(reference_energy, "reference_energy", "(M,)", 1)
    if x_ref.shape[1] != x.shape[1]:
        raise ValueError(f"reference_x has dimension {x_ref.shape[1]}, x has {x.shape[1]}")
    rng = np.random.default_rng(seed)
    row: dict[str, float] = {"n_samples": float(len(x)), "n_nonfinite": float(n_nonfinite)}
    if lw is not None:
        row["ess"] = kish_ess(lw)
        pick = snis_resample(lw, int(n_eval), generator_or_seed=rng).indices
    else:
        row["ess"] = math.nan
        finite_rows = np.flatnonzero(ok)
        if len(finite_rows) == 0:
            raise ValueError("no sample with a finite energy")
        pick = finite_rows if len(finite_rows) <= n_eval else rng.choice(finite_rows, int(n_eval), replace=False)
    row["w2"] = wasserstein2(x[pick], x_ref, max_points=int(w2_points), seed=seed)
    row["energy_w1"] = energy_wasserstein(energy[pick], e_ref, p=1)
    row["log_z"] = float(log_z)
    row["log_z_error"] = (abs(float(log_z) - float(log_z_true))
                          if log_z_true is not None and math.isfinite(float(log_z)) else math.nan)
    if centres is not None:
        keep = ok if lw is None else np.isfinite(lw)
        w = mode_weights(x[keep], centres, log_w=None if lw is None else lw[keep])
        w_ref = mode_weights(x_ref, centres)
        row["mode_tv"] = 0.5 * float(np.abs(w - w_ref).sum())
        row["modes_found"] = float((w >= 0.1 / len(w)).mean())
    if well_coordinates is not None:
        cols = np.asarray(well_coordinates, dtype=np.int64).reshape(-1)
        keep = ok if lw is None else np.isfinite(lw)
        if lw is None:
            p = np.full(int(keep.sum()), 1.0 / max(int(keep.sum()), 1))
        else:
            p = np.exp(lw[keep] - lw[keep].max())
            p /= p.sum()
        left = p @ (x[keep][:, cols] < 0.0)
        left_ref = (x_ref[:, cols] < 0.0).mean(axis=0)
        row["well_tv"] = float(np.abs(left - left_ref).mean())
    return row
