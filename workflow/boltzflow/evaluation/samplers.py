"""One scoring function for every sampler of the cross-method comparison (equally weighted
samples from MCMC, importance-weighted ones from flows and diffusion samplers) against reference
samples of the target: log Z error, W2, energy W1, ESS and mode weights; and its peptide version
against MD frames: energy W1, torsion W2 and the populations of the backbone states."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import pandas as pd

from boltzflow.evaluation.arrays import _finite
from boltzflow.evaluation.distances import energy_wasserstein, wasserstein2
from boltzflow.evaluation.modes import mode_weights
from boltzflow.evaluation.scoring import evenly_spaced, score_peptide_samples
from boltzflow.evaluation.states import STATES, conformational_states
from boltzflow.evaluation.weights import kish_ess, snis_resample
from boltzflow.systems import backbone_dihedrals

__all__ = ["score_sample_set", "score_peptide_set", "state_populations"]


def score_sample_set(x: Any, energy: Any, *, reference_x: Any, reference_energy: Any, log_w: Any = None,
                     log_z: float = math.nan, log_z_true: float | None = None, centres: Any = None,
                     well_coordinates: Any = None, pair_distances: Callable[[np.ndarray], np.ndarray] | None = None,
                     n_eval: int = 2000, w2_points: int = 2000, seed: int = 0) -> dict[str, float]:
    """Metrics of a sample set ``x`` ``(N, d)`` with energies ``(N,)`` against reference samples.

    With ``log_w`` (unnormalised log importance weights, ``-inf`` for weight 0) the set is first
    resampled by SNIS to ``n_eval`` points and ``ess`` (normalised Kish) is reported; without, a
    random subset of ``n_eval`` points is used (all of them if fewer) and ``ess`` is NaN. Then:

    - ``w2``: exact-OT 2-Wasserstein distance to the reference (``w2_points`` per side; 0 leaves it
      out, as for particles, whose coordinates are defined up to permutations and rotations);
    - with ``pair_distances`` (configurations ``(n, d)`` -> their interatomic distances, pooled):
      ``distance_w1``, the 1-Wasserstein distance between the pooled distances of the points and of
      the reference;
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
    if int(w2_points) > 0:
        row["w2"] = wasserstein2(x[pick], x_ref, max_points=int(w2_points), seed=seed)
    row["energy_w1"] = energy_wasserstein(energy[pick], e_ref, p=1)
    if pair_distances is not None:
        row["distance_w1"] = energy_wasserstein(pair_distances(x[pick]), pair_distances(x_ref), p=1)
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


def state_populations(dihedrals: pd.DataFrame) -> np.ndarray:
    """The share of rows in each backbone state of :data:`~boltzflow.evaluation.states.STATES`,
    per residue: ``(n_residues, 4)``."""
    states = conformational_states(dihedrals)
    return np.stack([states[c].value_counts(normalize=True).reindex(list(STATES), fill_value=0.0).to_numpy(float)
                     for c in states.columns])


def score_peptide_set(x: Any, energy: Any, *, reference_x: Any, reference_energy: Any, topology: Any,
                      log_w: Any = None, n_eval: int = 2000, tw2_points: int = 2000, seed: int = 0) -> dict[str, float]:
    """:func:`score_sample_set` for a peptide ``(N, 3 n_atoms)`` (nm), against MD frames.

    The set (with ``log_w`` importance log-weights, or equally weighted) goes through
    :func:`~boltzflow.evaluation.scoring.score_peptide_samples` (chirality of mirrored proposals
    fixed, rows with non-finite coordinates or energies, or weight 0, left out and counted as
    ``n_nonfinite``, ``n_eval`` points resampled by SNIS, no quantile filter), which gives:

    - ``ess`` (weighted sets only; Kish over every row, the rows left out counting as weight 0);
    - ``energy_w1`` against ``n_eval`` evenly spaced reference energies, and ``t_w2``, the torus
      2-Wasserstein distance of the backbone dihedrals (``tw2_points`` per side);
    - ``mode_tv``: the total-variation distance ``0.5 sum_s |p_s - p_s^ref|`` between the backbone
      state populations (alpha_R, beta, alpha_L, C7ax; averaged over residues) of the resampled
      points and of the reference points; ``modes_found``: the share of the (residue, state) pairs
      populated in the reference whose sample population is at least a tenth of the reference's.
    """
    x = np.asarray(x, dtype=np.float64)
    energy = np.asarray(energy, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or len(energy) != len(x):
        raise ValueError(f"x must be (N, d) with one energy per row, got {x.shape} and {energy.shape}")
    weighted = log_w is not None
    lw = np.zeros(len(x)) if log_w is None else np.asarray(log_w, dtype=np.float64).reshape(-1)
    if len(lw) != len(x):
        raise ValueError(f"log_w has {len(lw)} rows, x has {len(x)}")
    with np.errstate(invalid="ignore"):
        log_q = -energy - lw  # log w = -u - log q; weight 0 gives log q = +inf: left out, counted
    reference_x = _finite(reference_x, "reference_x", "(M, d)", 2)
    row, resampled = score_peptide_samples(x, energy, log_q, n_drawn=len(x), reference_x=reference_x,
                                           reference_energy=reference_energy, topology=topology,
                                           settings={"n_eval": int(n_eval), "tw2_points": int(tw2_points),
                                                     "seed": int(seed), "quantile_filter": 0.0})
    out = {"n_samples": float(len(x)), "n_nonfinite": float(row["n_invalid"]),
           "ess": float(row["ess"]) if weighted else math.nan,
           "energy_w1": float(row["e_w1"]), "t_w2": float(row["t_w2"])}
    if resampled.empty:
        out.update(mode_tv=1.0, modes_found=0.0)
        return out
    ref_angles = backbone_dihedrals(reference_x[evenly_spaced(len(reference_x), int(n_eval))], topology)
    p_ref = state_populations(ref_angles.drop(columns="frame"))
    p = state_populations(resampled.drop(columns=["sample", "energy"]))
    out["mode_tv"] = float(0.5 * np.abs(p - p_ref).sum(axis=1).mean())
    populated = p_ref > 0
    out["modes_found"] = float((p[populated] >= 0.1 * p_ref[populated]).mean())
    return out
