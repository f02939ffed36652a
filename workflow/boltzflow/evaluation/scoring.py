"""Score a sample set of a peptide against reference MD data: one row of the papers' tables.

Every metric is in :mod:`boltzflow.evaluation`; this module only composes them, in the order of
the papers' evaluation (REFERENCE.md "Metrics").
"""

from __future__ import annotations

from typing import Any, Mapping

import mdtraj
import numpy as np
import pandas as pd

from boltzflow.evaluation.chirality import (
    chirality_centres,
    chirality_signs,
    fix_chirality,
)
from boltzflow.evaluation.distances import energy_wasserstein, torus_wasserstein2
from boltzflow.evaluation.fep import free_energy_from_populations
from boltzflow.evaluation.states import state_mask
from boltzflow.evaluation.statistics import bootstrap_ci
from boltzflow.evaluation.weights import kish_ess, snis_resample
from boltzflow.systems import backbone_dihedrals

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


def _reweighted_free_energy(x: np.ndarray, log_w: np.ndarray, topology, states: Mapping[str, Any]) -> dict:

    dihedrals = backbone_dihedrals(x, topology)
    in_a = state_mask(dihedrals, states["state_a"], name="state_a")
    in_b = state_mask(dihedrals, states["state_b"], name="state_b")

    def statistic(a, b, lw):
        return free_energy_from_populations(a, b, log_w=lw)

    try:
        ci = bootstrap_ci(statistic, in_a, in_b, log_w, n_boot=int(states.get("n_boot", 1000)),
                          seed=int(states.get("seed", 0)))
    except ValueError:  # a state without weight, in the sample or in a resample: no estimate
        return {"dF": float("nan"), "dF_low": float("nan"), "dF_high": float("nan")}
    return {"dF": ci.estimate, "dF_low": ci.low, "dF_high": ci.high}


def score_peptide_samples(x: np.ndarray, energy: np.ndarray, log_q: np.ndarray, *, n_drawn: int,
                          reference_x: np.ndarray, reference_energy: np.ndarray, topology: mdtraj.Topology,
                          settings: Mapping[str, Any] | None = None,
                          states: Mapping[str, Any] | None = None) -> tuple[dict[str, float | int], pd.DataFrame]:
    """The metrics of one sample set; ``reference_*`` are the MD test frames. Returns a flat dict of numbers and the resampled points (``sample``, the index of the
    point among the *valid* rows, ``energy`` and the backbone dihedrals, one row per resampled
    point; empty when no sample has a finite weight).

    With ``states`` (``state_a``, ``state_b`` as in :mod:`boltzflow.evaluation.states`, ``n_boot``, ``seed``)
    the row also holds the reweighted free energy ``dF = -log(p_B / p_A)`` of the samples with a
    bootstrap interval (``dF``, ``dF_low``, ``dF_high``; NaN when a state gets no weight).

    From proposals ``x`` with energies and exact ``log q`` it computes, in this order:

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
    """
    cfg = {**SCORE_DEFAULTS, **dict(settings or {})}
    x = np.asarray(x)
    energy = np.asarray(energy, dtype=np.float64)
    log_q = np.asarray(log_q, dtype=np.float64)
    if not (len(x) == len(energy) == len(log_q)):
        raise ValueError(f"x, energy and log_q differ in length: {len(x)}, {len(energy)}, {len(log_q)}")
    # rows a sampler should not have written (NaN or infinite log q, NaN energy, bad coordinates)
    # are left out and counted, as the sampling stage does
    valid = np.isfinite(log_q) & ~np.isnan(energy) & (energy != -np.inf) & np.isfinite(x).all(axis=1)
    x, energy, log_q = x[valid], energy[valid], log_q[valid]
    if len(x) == 0:
        raise ValueError(f"no valid samples to score ({int((~valid).sum())} invalid rows)")
    log_w = -energy - log_q
    row: dict[str, float | int] = {"n_drawn": int(max(n_drawn, len(valid))), "n_valid": len(x),
                                   "n_invalid": int(max(n_drawn, len(valid)) - len(x))}
    centres = chirality_centres(topology)
    if centres:
        x, chirality = fix_chirality(x, centres, reference_chirality(reference_x, centres))
        log_w = np.where(chirality["unfixable_mask"], -np.inf, log_w)
        row.update(mirrored_rate=chirality["mirrored_rate"], unfixable_rate=chirality["unfixable_rate"])
    row["n_zero_weight"] = int(np.isneginf(log_w).sum())
    if states is not None:
        row.update(_reweighted_free_energy(x, log_w, topology, states))
    # proposals left out of the set are weight-0 draws: Kish ESS / N scales by n_valid / n_drawn
    row["ess"] = kish_ess(log_w) * len(x) / row["n_drawn"] if np.isfinite(log_w).any() else 0.0
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
