"""Score a sample set of a peptide against reference MD data: one row of the papers' tables.

:func:`score_peptide_samples` takes proposals ``x`` with energies and exact ``log q`` and
computes, in this order (the papers' evaluation, see REFERENCE.md "Metrics"):

1. **chirality**: the sign of every C-alpha centre is compared with the reference data's; samples
   that are the mirror image are mirrored (``x -> -x``, energy unchanged) and samples with mixed
   signs get weight 0; both rates are reported;
2. **ESS**: Kish's normalised ESS of ``log_w = -u - log q``, over every proposal drawn (invalid
   ones, left out of the sample set, count as weight 0);
3. **SNIS**: ``n_eval`` points resampled with ``softmax(log_w)`` after the quantile filter;
4. **E-W1, E-W2** between the resampled energies and ``n_eval`` reference energies, and
   **T-W2** between their backbone dihedrals (phi/psi of every residue, torus metric, exact OT);
5. the same energy distances for the raw proposals (no reweighting), which still say something
   when the ESS is near 0.

Every metric is in :mod:`boltzflow.evaluation`; this module only composes them.
"""

from __future__ import annotations

from typing import Any, Mapping

import mdtraj
import numpy as np
import pandas as pd

from boltzflow.evaluation import (chirality_centres, chirality_signs, energy_wasserstein, fix_chirality, kish_ess,
                                  snis_resample, torus_wasserstein2)
from boltzflow.observables import backbone_dihedrals

__all__ = ["score_peptide_samples", "reference_chirality", "evenly_spaced", "SCORE_DEFAULTS"]

SCORE_DEFAULTS = {"n_eval": 10_000, "quantile_filter": 0.002, "tw2_points": 10_000, "seed": 0}


def evenly_spaced(n_total: int, n: int) -> np.ndarray:
    """``min(n, n_total)`` evenly spaced row indices of ``range(n_total)`` (a strided subsample
    of a trajectory, as the papers take their reference points)."""
    return np.unique(np.linspace(0, n_total - 1, min(n, n_total)).round().astype(np.int64))


def reference_chirality(x_reference: np.ndarray, centres) -> np.ndarray:
    """The chirality signs of the reference data: the majority sign at every centre."""
    signs = chirality_signs(x_reference[evenly_spaced(len(x_reference), 1000)], centres)
    majority = np.sign(signs.astype(np.int64).sum(axis=0))
    if (majority == 0).any():
        raise ValueError("the reference data have no majority chirality at some centre")
    return majority


def score_peptide_samples(x: np.ndarray, energy: np.ndarray, log_q: np.ndarray, *, n_drawn: int,
                          reference_x: np.ndarray, reference_energy: np.ndarray, topology: mdtraj.Topology,
                          settings: Mapping[str, Any] | None = None) -> tuple[dict[str, float | int], pd.DataFrame]:
    """The metrics of one sample set (see the module docstring); ``reference_*`` are the MD test
    frames. Returns a flat dict of numbers and the resampled points (``energy`` and the backbone
    dihedrals, one row per resampled point; empty when no sample has a finite weight)."""
    cfg = {**SCORE_DEFAULTS, **dict(settings or {})}
    x = np.asarray(x)
    energy = np.asarray(energy, dtype=np.float64)
    log_w = -energy - np.asarray(log_q, dtype=np.float64)
    if not (len(x) == len(energy) == len(log_w)):
        raise ValueError(f"x, energy and log_q differ in length: {len(x)}, {len(energy)}, {len(log_w)}")
    if len(x) == 0:
        raise ValueError("no valid samples to score")
    row: dict[str, float | int] = {"n_drawn": int(n_drawn), "n_valid": len(x), "n_invalid": int(n_drawn - len(x))}
    centres = chirality_centres(topology)
    if centres:
        x, chirality = fix_chirality(x, centres, reference_chirality(reference_x, centres))
        log_w = np.where(chirality["unfixable_mask"], -np.inf, log_w)
        row.update(mirrored_rate=chirality["mirrored_rate"], unfixable_rate=chirality["unfixable_rate"])
    row["n_zero_weight"] = int(np.isneginf(log_w).sum())
    # proposals left out of the set are weight-0 draws: Kish ESS / N scales by n_valid / n_drawn
    row["ess"] = kish_ess(log_w) * len(x) / max(int(n_drawn), 1) if np.isfinite(log_w).any() else 0.0
    row["median_energy_raw"] = float(np.median(energy))
    finite_u = energy[np.isfinite(energy)]
    ref_idx = evenly_spaced(len(reference_x), int(cfg["n_eval"]))
    ref_u = np.asarray(reference_energy, dtype=np.float64)[ref_idx]
    row["e_w1_raw"] = energy_wasserstein(finite_u, ref_u, p=1) if len(finite_u) else float("inf")
    if not np.isfinite(log_w).any():
        row.update(e_w1=float("inf"), e_w2=float("inf"), t_w2=float("nan"), n_filtered=0)
        return row, pd.DataFrame()
    resampled = snis_resample(log_w, int(cfg["n_eval"]), generator_or_seed=int(cfg["seed"]),
                              quantile_filter=float(cfg["quantile_filter"]))
    picked = resampled.indices
    row["n_filtered"] = resampled.n_filtered
    row["e_w1"] = energy_wasserstein(energy[picked], ref_u, p=1)
    row["e_w2"] = energy_wasserstein(energy[picked], ref_u, p=2)
    dihedrals = backbone_dihedrals(x[picked], topology).drop(columns="frame")
    ref_angles = backbone_dihedrals(reference_x[ref_idx], topology).drop(columns="frame").to_numpy()
    row["t_w2"] = torus_wasserstein2(dihedrals.to_numpy(), ref_angles, max_points=int(cfg["tw2_points"]),
                                     seed=int(cfg["seed"]))
    row["unique_resampled"] = int(len(np.unique(picked)))
    resampled_points = pd.concat([pd.DataFrame({"sample": picked, "energy": energy[picked]}), dihedrals], axis=1)
    return row, resampled_points
