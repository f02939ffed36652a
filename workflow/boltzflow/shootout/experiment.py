"""One row of the comparison: a method run at a budget and scored against reference samples
(:func:`score_run`), or the metrics' own floor, reference-quality samples scored the same way
(:func:`exact_floor`). The reference of a synthetic density is a draw of its exact sampler; of a
peptide, the test split of its MD (the floor: MD training frames); of a particle system, its
parallel-tempering reference samples (the floor: held-out reference samples)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import mdtraj
import numpy as np
import torch

from boltzflow.evaluation import score_peptide_set, score_sample_set
from boltzflow.io import ArtifactError, read_sample_set
from boltzflow.md import split_frames_and_energies
from boltzflow.sgds.egnn import remove_mean
from boltzflow.sgds.settings import resolve_sgds_run
from boltzflow.shootout.runs import run_method
from boltzflow.shootout.settings import DIFFUSION_METHODS, shootout_settings
from boltzflow.targets import load_target
from boltzflow.targets.base import Target
from boltzflow.targets.peptide import PeptideTarget

__all__ = ["REFERENCE_SEED_OFFSET", "reference_set", "md_reference", "particle_reference", "score_run",
           "exact_floor"]

#: Reference samples of seed k come from an exact sampler seeded with this + k (never a run's seed)
REFERENCE_SEED_OFFSET = 1_000_000

#: The files a target's reference comes from, by kind (the rule's input names)
REFERENCE_FILES = {"peptide": ("frames", "split"), "particle": ("reference",)}


def reference_set(target: Target, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` exact samples of ``target`` and their energies (float64), the same for every method of a seed."""
    gen = torch.Generator().manual_seed(REFERENCE_SEED_OFFSET + int(seed))
    with torch.no_grad():
        x = target.sample(int(n), generator=gen).to(torch.float64)
        return x.numpy(), target.energy(x).numpy()


def md_reference(frames: str | Path, split: str | Path, which: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """A peptide's reference: the frames of one split of its MD (``md/<peptide>/frames.parquet``
    and ``split.parquet``) and their reduced energies."""
    x, energy = split_frames_and_energies(frames, split, which)
    return np.asarray(x, dtype=np.float64), np.asarray(energy, dtype=np.float64)


def particle_reference(target: Target, path: str | Path, n_reference: int, n_held_out: int,
                       seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A particle system's reference samples (``reference/<target>.parquet``, centroid removed) in a
    seeded order, cut in two: at most ``n_reference`` points (the reference every run of the seed
    is scored against) and ``n_held_out`` others (the floor's sample set), each with its energies."""
    samples = read_sample_set(path, expected_dim=target.dim, expected_target=target.name)
    x = remove_mean(torch.as_tensor(np.array(samples.x, dtype=np.float64)), target.n_particles, target.spatial_dim)
    if len(x) < int(n_held_out) + 2:
        raise ArtifactError(f"{path}: {len(x)} reference samples; the comparison needs at least {int(n_held_out) + 2} "
                            f"(n_eval {int(n_held_out)} held out for the floor)")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(REFERENCE_SEED_OFFSET + int(seed)))
    held_out, reference = x[order[: int(n_held_out)]], x[order[int(n_held_out):][: int(n_reference)]]
    with torch.no_grad():
        return ((reference.numpy(), target.energy(reference).to(torch.float64).numpy()),
                (held_out.numpy(), target.energy(held_out).to(torch.float64).numpy()))


def _centres(target: Target) -> np.ndarray | None:
    means = getattr(target, "means", None)
    return None if means is None else np.asarray(means, dtype=np.float64)


class _Reference:
    """What a target's samples are scored against, and the floor's sample set (see the module
    docstring); ``files`` are the rule's reference inputs (none for a synthetic density)."""

    def __init__(self, target: Target, settings: Mapping[str, Any], seed: int, files: Mapping[str, Any] | None):
        self.target, self.settings, self.seed = target, settings, int(seed)
        kind = "peptide" if isinstance(target, PeptideTarget) else \
            "particle" if getattr(target, "com_free", False) else "density"
        missing = [name for name in REFERENCE_FILES.get(kind, ()) if not (files or {}).get(name)]
        if missing:
            raise ValueError(f"{target.name}: a {kind} target is scored against its reference files; "
                             f"missing {', '.join(missing)}")
        self.kind, self.files = kind, dict(files or {})

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference points and their energies."""
        if self.kind == "peptide":
            return md_reference(self.files["frames"], self.files["split"], "test")
        if self.kind == "particle":
            return particle_reference(self.target, self.files["reference"], int(self.settings["reference_samples"]),
                                      int(self.settings["n_eval"]), self.seed)[0]
        return reference_set(self.target, self.settings["reference_samples"], self.seed)

    def floor_points(self) -> tuple[np.ndarray, np.ndarray]:
        """``n_eval`` samples of reference quality, not among the reference points."""
        n, gen = int(self.settings["n_eval"]), torch.Generator().manual_seed(self.seed)
        if self.kind == "peptide":
            x, energy = md_reference(self.files["frames"], self.files["split"], "train")
            rows = torch.randperm(len(x), generator=gen)[:n].numpy()
            return x[rows], energy[rows]
        if self.kind == "particle":
            return particle_reference(self.target, self.files["reference"], int(self.settings["reference_samples"]),
                                      n, self.seed)[1]
        with torch.no_grad():
            x = self.target.sample(n, generator=gen).to(torch.float64)
            return x.numpy(), self.target.energy(x).numpy()

    def score(self, x, energy, log_w, log_z) -> dict[str, float]:
        """The metrics of a sample set (with importance log-weights or equally weighted)."""
        x_ref, e_ref = self.points()
        n_eval, w2_points, seed = int(self.settings["n_eval"]), int(self.settings["w2_points"]), self.seed
        if self.kind == "peptide":
            return score_peptide_set(x, energy, reference_x=x_ref, reference_energy=e_ref, log_w=log_w,
                                     topology=mdtraj.Topology.from_openmm(self.target.topology), n_eval=n_eval,
                                     tw2_points=w2_points, seed=seed)
        if self.kind == "particle":
            def distances(points: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return self.target.squared_distances(torch.as_tensor(points)).sqrt().reshape(-1).numpy()

            return score_sample_set(x, energy, reference_x=x_ref, reference_energy=e_ref, log_w=log_w, log_z=log_z,
                                    pair_distances=distances, n_eval=n_eval, w2_points=0, seed=seed)
        return score_sample_set(x, energy, reference_x=x_ref, reference_energy=e_ref, log_w=log_w, log_z=log_z,
                                log_z_true=self.target.log_z, centres=_centres(self.target),
                                well_coordinates=getattr(self.target, "well_coordinates", None), n_eval=n_eval,
                                w2_points=w2_points, seed=seed)


def score_run(section: Mapping[str, Any], sgds_section: Mapping[str, Any], target_name: str, method: str,
              budget: int, seed: int, *, log: logging.Logger | None = None,
              checkpoint_dir: str | Path | None = None,
              reference_files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``method`` on ``target_name`` with ``budget`` energy calls and score it: one row with the
    target, its kind (``density``, ``peptide``, ``particle``), method, budget, seed, the energy calls the method spent, its wall time, the metrics of
    :func:`~boltzflow.evaluation.score_sample_set` (:func:`~boltzflow.evaluation.score_peptide_set`
    for a peptide) and the method's details. ``reference_files``: a peptide's MD ``frames`` and
    ``split``, a particle system's ``reference`` samples. Training checkpoints to
    ``checkpoint_dir`` (a killed run resumes from it)."""
    log = log or logging.getLogger("boltzflow.shootout")
    settings = shootout_settings(section, target_name)
    target = load_target(target_name)
    reference = _Reference(target, settings, seed, reference_files)  # checked before the run
    base = resolve_sgds_run(sgds_section, target_name, method, seed) if method in DIFFUSION_METHODS else None
    run = run_method(method, target, int(budget), int(seed), settings, sgds_settings=base, log=log,
                     checkpoint_dir=checkpoint_dir)
    if run.energy_calls > budget:
        raise RuntimeError(f"{method} on {target_name} spent {run.energy_calls} energy calls, over its budget {budget}")
    row = {"target": target_name, "kind": reference.kind, "method": method, "budget": int(budget), "seed": int(seed),
           "dim": int(target.dim), "energy_calls": int(run.energy_calls), "wall_s": float(run.wall_s),
           **reference.score(run.x, run.energy, run.log_w, run.log_z),
           **{f"detail_{k}": v for k, v in run.details.items() if isinstance(v, (int, float))}}
    log.info("%s %s budget %d seed %d: %s", target_name, method, budget, seed,
             {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    return row


def exact_floor(section: Mapping[str, Any], target_name: str, seed: int,
                reference_files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metrics of ``n_eval`` samples of reference quality (exact samples of another draw, MD
    training frames, held-out reference samples) scored as every method is: what a perfect sampler
    scores with this many points, the floor under every method's curve."""
    settings = shootout_settings(section, target_name)
    target = load_target(target_name)
    reference = _Reference(target, settings, seed, reference_files)
    x, energy = reference.floor_points()
    return {"target": target_name, "kind": reference.kind, "method": "exact", "budget": 0, "seed": int(seed),
            "dim": int(target.dim),
            "energy_calls": 0, "wall_s": 0.0, **reference.score(x, energy, None, float("nan"))}
