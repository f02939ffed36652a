"""One row of the comparison: a method run at a budget and scored against reference samples
(:func:`score_run`: exact samples of a synthetic target, the MD test split of a peptide), or the
metrics' own floor, exact samples (MD training frames for a peptide) scored the same way
(:func:`exact_floor`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import mdtraj
import numpy as np
import torch

from boltzflow.evaluation import score_peptide_set, score_sample_set
from boltzflow.md import split_frames_and_energies
from boltzflow.sgds.settings import resolve_sgds_run
from boltzflow.shootout.runs import run_method
from boltzflow.shootout.settings import DIFFUSION_METHODS, shootout_settings
from boltzflow.targets import load_target
from boltzflow.targets.base import Target
from boltzflow.targets.peptide import PeptideTarget

__all__ = ["REFERENCE_SEED_OFFSET", "reference_set", "md_reference", "score_run", "exact_floor"]

#: Reference samples of seed k come from an exact sampler seeded with this + k (never a run's seed)
REFERENCE_SEED_OFFSET = 1_000_000


def reference_set(target: Target, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` exact samples of ``target`` and their energies (float64), the same for every method of a seed."""
    gen = torch.Generator().manual_seed(REFERENCE_SEED_OFFSET + int(seed))
    with torch.no_grad():
        x = target.sample(int(n), generator=gen).to(torch.float64)
        return x.numpy(), target.energy(x).numpy()


def _centres(target: Target) -> np.ndarray | None:
    means = getattr(target, "means", None)
    return None if means is None else np.asarray(means, dtype=np.float64)


def md_reference(frames: str | Path, split: str | Path, which: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """A peptide's reference: the frames of one split of its MD (``md/<peptide>/frames.parquet``
    and ``split.parquet``) and their reduced energies."""
    x, energy = split_frames_and_energies(frames, split, which)
    return np.asarray(x, dtype=np.float64), np.asarray(energy, dtype=np.float64)


def _score(target: Target, settings: Mapping[str, Any], seed: int, x, energy, log_w, log_z,
           reference: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    if isinstance(target, PeptideTarget):
        if reference is None:
            raise ValueError(f"{target.name}: a peptide is scored against its MD frames; give the reference")
        x_ref, e_ref = reference
        return score_peptide_set(x, energy, reference_x=x_ref, reference_energy=e_ref, log_w=log_w,
                                 topology=mdtraj.Topology.from_openmm(target.topology), n_eval=int(settings["n_eval"]),
                                 tw2_points=int(settings["w2_points"]), seed=int(seed))
    x_ref, e_ref = reference_set(target, settings["reference_samples"], seed)
    return score_sample_set(x, energy, reference_x=x_ref, reference_energy=e_ref, log_w=log_w, log_z=log_z,
                            log_z_true=target.log_z, centres=_centres(target),
                            well_coordinates=getattr(target, "well_coordinates", None), n_eval=int(settings["n_eval"]),
                            w2_points=int(settings["w2_points"]), seed=int(seed))


def score_run(section: Mapping[str, Any], sgds_section: Mapping[str, Any], target_name: str, method: str,
              budget: int, seed: int, *, log: logging.Logger | None = None,
              checkpoint_dir: str | Path | None = None,
              md_frames: tuple[str | Path, str | Path] | None = None) -> dict[str, Any]:
    """Run ``method`` on ``target_name`` with ``budget`` energy calls and score it: one row with the
    target, method, budget, seed, the energy calls the method spent, its wall time, the metrics of
    :func:`~boltzflow.evaluation.score_sample_set` (of :func:`~boltzflow.evaluation.score_peptide_set`
    against the test split of ``md_frames``, the MD frames and split files, for a peptide) and the
    method's details. Training checkpoints to ``checkpoint_dir`` (a killed run resumes from it)."""
    log = log or logging.getLogger("boltzflow.shootout")
    settings = shootout_settings(section, target_name)
    target = load_target(target_name)
    reference = _peptide_reference(target, md_frames, "test")
    base = resolve_sgds_run(sgds_section, target_name, method, seed) if method in DIFFUSION_METHODS else None
    run = run_method(method, target, int(budget), int(seed), settings, sgds_settings=base, log=log,
                     checkpoint_dir=checkpoint_dir)
    if run.energy_calls > budget:
        raise RuntimeError(f"{method} on {target_name} spent {run.energy_calls} energy calls, over its budget {budget}")
    row = {"target": target_name, "method": method, "budget": int(budget), "seed": int(seed), "dim": int(target.dim),
           "energy_calls": int(run.energy_calls), "wall_s": float(run.wall_s),
           **_score(target, settings, seed, run.x, run.energy, run.log_w, run.log_z, reference),
           **{f"detail_{k}": v for k, v in run.details.items() if isinstance(v, (int, float))}}
    log.info("%s %s budget %d seed %d: %s", target_name, method, budget, seed,
             {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return row


def _peptide_reference(target: Target, md_frames, which: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(target, PeptideTarget):
        return None
    if md_frames is None:
        raise ValueError(f"{target.name}: a peptide is scored against its MD frames; give md/{target.name}/frames.parquet "
                         "and split.parquet")
    return md_reference(*md_frames, which=which)


def exact_floor(section: Mapping[str, Any], target_name: str, seed: int,
                md_frames: tuple[str | Path, str | Path] | None = None) -> dict[str, Any]:
    """The metrics of ``n_eval`` exact samples (a different draw from the reference): what a perfect
    sampler scores with this many points, the floor under every method's curve. For a peptide,
    ``n_eval`` frames drawn (seeded) from the training split of its MD, scored against the test split."""
    settings = shootout_settings(section, target_name)
    target = load_target(target_name)
    gen = torch.Generator().manual_seed(int(seed))
    if isinstance(target, PeptideTarget):
        x_train, e_train = _peptide_reference(target, md_frames, "train")
        rows = torch.randperm(len(x_train), generator=gen)[: int(settings["n_eval"])].numpy()
        x, energy = x_train[rows], e_train[rows]
        scores = _score(target, settings, seed, x, energy, None, float("nan"),
                        _peptide_reference(target, md_frames, "test"))
    else:
        with torch.no_grad():
            x = target.sample(int(settings["n_eval"]), generator=gen).to(torch.float64)
            energy = target.energy(x)
        scores = _score(target, settings, seed, x.numpy(), energy.numpy(), None, float("nan"))
    return {"target": target_name, "method": "exact", "budget": 0, "seed": int(seed), "dim": int(target.dim),
            "energy_calls": 0, "wall_s": 0.0, **scores}
