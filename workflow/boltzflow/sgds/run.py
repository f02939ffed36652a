"""One SGDS run of the workflow: settings from the config, training (rule ``train_sgds``) and the
paper's metrics (rule ``evaluate_sgds``), from the rule scripts or the command line (``python -m
boltzflow.sgds.run``); reference samples are exact draws or read from the target's sample set.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from boltzflow.cli import parse_stage, stage_parser
from boltzflow.evaluation import energy_wasserstein
from boltzflow.io import ArtifactError, config_hash, provenance, read_sample_set, write_table
from boltzflow.md import system_masses
from boltzflow.sgds.egnn import remove_mean
from boltzflow.sgds.learner import elbo_monitor, evaluate_sampler, load_sampler, save_sampler
from boltzflow.sgds.settings import (
    SGDS_METHODS,
    SGDSSettings,
    check_sgds_target,
    needs_reference_file,
    resolve_sgds_run,
)
from boltzflow.sgds.train import MDSystem, evaluation_grid, train_sgds
from boltzflow.targets import load_target, names_of_kind
from boltzflow.units import resolve_device

__all__ = ["sgds_target", "read_reference_samples", "particles_of", "pair_distances", "molecule_of",
           "train_run", "evaluate_run", "main"]


def sgds_target(name: str):
    """The target ``name``: a synthetic one with an exact sampler, a particle target (lj13, lj55,
    dw4) whose reference samples come from the ``reference_samples`` rule, or a peptide (al2, al3,
    al4; building it needs OpenMM) whose reference samples are its MD frames."""

    check_sgds_target(name)
    return load_target(name)


def particles_of(target) -> tuple[int, int] | None:
    """``(n_particles, spatial_dim)`` of a translation-invariant target (particles, peptides in
    vacuum or implicit solvent), else None."""
    if getattr(target, "com_free", False):
        return (target.n_particles, target.spatial_dim)
    if target.name in names_of_kind("peptide"):
        return (target.n_atoms, 3)
    return None


def molecule_of(target):
    """For a peptide: the ``md`` Searcher's :class:`~boltzflow.sgds.train.MDSystem` (masses, the
    temperature, the minimised structure) and the EGNN's atom labels (one per atom); else None."""
    if target.name not in names_of_kind("peptide"):
        return None, None

    md = MDSystem(system_masses(target.openmm_system), target.temperature, target.positions.reshape(-1))
    return md, tuple(range(target.n_atoms))


def read_reference_samples(target, n: int, seed: int, path: str | Path | None = None) -> torch.Tensor:
    """``n`` reference samples of ``target`` (float64): exact draws (seeded) or, for a target
    without an exact sampler, ``n`` rows drawn without replacement from the sample set at
    ``path`` (all of them if it has fewer), moved to zero centre of mass for particles and peptides."""

    if not needs_reference_file(target.name):
        return target.sample(int(n), generator=torch.Generator().manual_seed(int(seed) + 10_007)).to(torch.float64)
    if path is None:
        where = (f"md/{target.name}/frames.parquet" if target.name in names_of_kind("peptide")
                 else f"reference/{target.name}.parquet")
        raise ValueError(f"target {target.name} has no exact sampler: give its reference sample set ({where})")
    samples = read_sample_set(path, expected_dim=target.dim,
                              expected_target=target.name if target.name in names_of_kind("particle") else None)
    x = torch.from_numpy(np.array(samples.x, dtype=np.float64))
    parts = particles_of(target)
    if parts is not None:  # MD frames drift: compare on the centre-of-mass-free subspace, as the Learner

        x = remove_mean(x, *parts)
    if len(x) < 2:
        raise ArtifactError(f"{path}: {len(x)} reference sample(s); need at least 2")
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(int(seed) + 10_007))[: int(n)]
    return x[rows]


def _energy64(target):
    return lambda x: target.energy(x.to(torch.float64))


def train_run(sgds_cfg: Mapping[str, Any], target_name: str, method: str, seed: int, *, model: str | Path,
              history: str | Path, checkpoint_dir: str | Path, reference: str | Path | None = None,
              rule: str = "train_sgds", log: logging.Logger | None = None) -> SGDSSettings:
    """Train one Learner on ``sgds.device``; write the model and the history (with ELBO / EUBO
    against energy calls when ``sgds.evaluation.monitor_samples`` > 0). The checkpoint folder is
    removed at the end."""
    log = log or logging.getLogger("boltzflow.sgds")
    settings = resolve_sgds_run(sgds_cfg, target_name, method, seed)
    device = resolve_device(sgds_cfg.get("device", "cpu"), key="sgds.device")
    target = sgds_target(target_name)
    ev = sgds_cfg["evaluation"]
    monitor = None
    md, node_types = molecule_of(target)
    if ev["monitor_samples"] > 0:
        ref = read_reference_samples(target, ev["monitor_samples"], ev["seed"], reference).to(device)
        monitor = elbo_monitor(_energy64(target), ev["monitor_samples"], ref, int(ev["seed"]) + 1,
                               times=evaluation_grid(settings), device=device)
    log.info("%s: %s, %d round(s) of %s iterations, batch %d", target_name, method, settings.rounds,
             list(settings.iterations[: settings.rounds]), settings.batch_size)
    options = {"target": target_name, "settings": asdict(settings), "monitor_samples": ev["monitor_samples"],
               "device": str(device)}
    sampler, buffer, table, summary = train_sgds(_energy64(target), target.dim, settings, checkpoint_dir,
                                                 identity=config_hash(options), log=log, monitor=monitor,
                                                 particles=particles_of(target), md=md, node_types=node_types,
                                                 device=device)
    meta = provenance(rule, options, seed=seed, target=target_name, method=method, dim=int(target.dim),
                      summary={k: v for k, v in summary.items() if k != "settings"})
    write_table(history, table, meta)
    save_sampler(model, sampler, extra={"provenance": json.dumps(meta, default=str),
                                        "energy_calls": int(summary["energy_calls"]),
                                        "searcher_calls": int(summary["searcher_calls"]),
                                        "learner_calls": int(summary["learner_calls"])})
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return settings


def evaluate_run(sgds_cfg: Mapping[str, Any], target_name: str, method: str, seed: int, *, model: str | Path,
                 metrics: str | Path, samples: str | Path, reference: str | Path | None = None,
                 rule: str = "evaluate_sgds", log: logging.Logger | None = None) -> dict[str, Any]:
    """ELBO, EUBO, gap, log Z errors, W2 and energy W2 of a trained Learner (on the uniform grid of
    the settings' ``eval_steps``); writes one metrics row (with the energy calls its training spent
    and the evaluation's steps) and the forward samples."""
    log = log or logging.getLogger("boltzflow.sgds")
    grid = evaluation_grid(resolve_sgds_run(sgds_cfg, target_name, method, seed))
    target = sgds_target(target_name)
    sampler, saved = load_sampler(model)
    if sampler.dim != target.dim:
        raise ValueError(f"{model}: a sampler of dimension {sampler.dim}, target {target_name} has {target.dim}")
    ev = sgds_cfg["evaluation"]
    ref = read_reference_samples(target, ev["n_reference"], ev["seed"], reference)
    gen = torch.Generator().manual_seed(int(ev["seed"]) + 2)
    values = evaluate_sampler(sampler, _energy64(target), ev["n_samples"], reference=ref, log_z=target.log_z,
                              generator=gen, w2_points=ev["w2_points"], times=grid)
    x = sampler.sample(ev["n_samples"], torch.Generator().manual_seed(int(ev["seed"]) + 3), grid).to(torch.float64)
    if hasattr(target, "squared_distances"):  # the paper's interatomic-distance histograms, as one number
        values["distance_w1"] = energy_wasserstein(pair_distances(target, x), pair_distances(target, ref), p=1)
    row = {"target": target_name, "method": method, "seed": seed, "dim": target.dim,
           "energy_calls": int(saved["energy_calls"]), "searcher_calls": int(saved["searcher_calls"]),
           "learner_calls": int(saved["learner_calls"]),
           "eval_steps": sampler.n_steps if grid is None else len(grid) - 1,
           "log_z_true": float("nan") if target.log_z is None else target.log_z, **values}
    log.info("%s %s seed %d: %s", target_name, method, seed,
             {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    meta = provenance(rule, {"evaluation": dict(ev)}, seed=seed, target=target_name, method=method)
    write_table(metrics, pd.DataFrame([row]), meta)
    write_table(samples, pd.DataFrame(x.numpy(), columns=[f"x{i}" for i in range(x.shape[1])]), meta)
    return row


def pair_distances(target, x: torch.Tensor) -> np.ndarray:
    """All interatomic distances of the configurations ``x`` of a particle target, pooled (float64)."""
    with torch.no_grad():
        return target.squared_distances(x.to(torch.float64)).sqrt().reshape(-1).numpy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one (target, method, seed) without Snakemake (a GPU node, a notebook)::

        python -m boltzflow.sgds.run --configfile config/paper/sgds.yaml --target manywell32 \\
            --method sgds --out results/one_sgds/manywell32-sgds [--iterations 2000 3000] [--threads 2]

    Config files are layered on ``config/config.yaml`` as Snakemake layers them and the ``sgds``
    section is checked against its schema first. The outputs are the rules' ``model.pt``,
    ``history.parquet``, ``metrics.parquet`` and ``samples.parquet``; an interrupted run resumes
    from ``checkpoint/``.
    """
    parser = stage_parser("python -m boltzflow.sgds.run", __doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="a synthetic target with an exact sampler, lj13 / lj55 / dw4, "
                                                          "or al2 / al3 / al4")
    parser.add_argument("--reference", help="reference sample set of a target without an exact sampler "
                                            "(reference/<target>.parquet, md/<peptide>/frames.parquet)")
    parser.add_argument("--method", required=True, choices=SGDS_METHODS)
    parser.add_argument("--iterations", type=int, nargs="+", help="override the Learner iterations per round")
    parser.add_argument("--device", help="where the Learner trains: cpu, cuda or auto (default: sgds.device)")
    args, cfg = parse_stage(parser, argv, "sgds")
    if needs_reference_file(args.target) and args.reference is None:
        parser.error(f"--reference: target {args.target} has no exact sampler; give its reference sample set")
    if args.device is not None:
        cfg["device"] = args.device
    if args.iterations is not None:
        if min(args.iterations) < 1:
            parser.error(f"--iterations must be >= 1, got {args.iterations}")
        cfg.setdefault("per_target", {}).setdefault(args.target, {})["iterations"] = list(args.iterations)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        train_run(cfg, args.target, args.method, args.seed, model=out / "model.pt", history=out / "history.parquet",
                  checkpoint_dir=out / "checkpoint", reference=args.reference)
        row = evaluate_run(cfg, args.target, args.method, args.seed, model=out / "model.pt",
                           metrics=out / "metrics.parquet", samples=out / "samples.parquet", reference=args.reference)
    except (ArtifactError, ValueError) as err:
        parser.exit(1, f"error: {err}\n")
    print(json.dumps(row, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
