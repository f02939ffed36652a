"""One SGDS run of the workflow: settings from the config, training (rule ``train_sgds``) and the
paper's metrics (rule ``evaluate_sgds``). The rule scripts only call these functions; so does the
command line, which runs one (target, method, seed) without Snakemake (a GPU node, a notebook)::

    python -m boltzflow.sgds.run --configfile config/paper/sgds.yaml --target manywell32 \
        --method sgds --out results/one_sgds/manywell32-sgds [--iterations 2000 3000] [--threads 2]

Config files are layered on ``config/config.yaml`` as Snakemake layers them and the ``sgds``
section is checked against its schema first. The outputs are the rules' ``model.pt``,
``history.parquet``, ``metrics.parquet`` and ``samples.parquet``; an interrupted run resumes from
``checkpoint/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from boltzflow.io import config_hash, provenance, write_table
from boltzflow.sgds.learner import elbo_eubo, evaluate_sampler, load_sampler, save_sampler
from boltzflow.sgds.train import SGDSSettings, train_sgds

__all__ = ["resolve_sgds_run", "sgds_target", "reference_samples", "train_run", "evaluate_run"]


def resolve_sgds_run(sgds_cfg: Mapping[str, Any], target: str, method: str, seed: int) -> SGDSSettings:
    """``sgds.settings`` with ``sgds.per_target.<target>`` merged over it, as :class:`SGDSSettings`;
    errors name the target and method."""
    merged = {**dict(sgds_cfg.get("settings", {})), **dict(sgds_cfg.get("per_target", {}).get(target, {}))}
    known = {f.name for f in fields(SGDSSettings)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValueError(f"sgds settings of target {target!r}: unknown key(s) {', '.join(unknown)}")
    if "iterations" in merged:
        merged["iterations"] = tuple(int(i) for i in merged["iterations"])
    try:
        return SGDSSettings(**{**merged, "method": method, "seed": int(seed)})
    except (TypeError, ValueError) as err:
        raise ValueError(f"sgds settings of target {target!r}, method {method!r}: {err}") from err


def sgds_target(name: str):
    """The synthetic target ``name``; it must have an exact sampler (for EUBO and W2)."""
    from boltzflow.targets import exact_sampler_names, load_target

    known = exact_sampler_names()
    if name not in known:
        raise ValueError(f"sgds.targets: {name!r} has no exact sampler for reference samples; known: {', '.join(known)}")
    return load_target(name)


def reference_samples(target, n: int, seed: int) -> torch.Tensor:
    """``n`` exact samples of ``target`` (float64), seeded."""
    return target.sample(int(n), generator=torch.Generator().manual_seed(int(seed) + 10_007)).to(torch.float64)


def _energy64(target):
    return lambda x: target.energy(x.to(torch.float64))


def train_run(sgds_cfg: Mapping[str, Any], target_name: str, method: str, seed: int, *, model: str | Path,
              history: str | Path, checkpoint_dir: str | Path, rule: str = "train_sgds",
              log: logging.Logger | None = None) -> SGDSSettings:
    """Train one Learner; write the model and the history (with ELBO / EUBO against energy calls
    when ``sgds.evaluation.monitor_samples`` > 0). The checkpoint folder is removed at the end."""
    import shutil

    log = log or logging.getLogger("boltzflow.sgds")
    settings = resolve_sgds_run(sgds_cfg, target_name, method, seed)
    target = sgds_target(target_name)
    ev = sgds_cfg["evaluation"]
    monitor = None
    if ev["monitor_samples"] > 0:
        reference = reference_samples(target, ev["monitor_samples"], ev["seed"])
        monitor_gen = torch.Generator().manual_seed(int(ev["seed"]) + 1)
        monitor = lambda s: elbo_eubo(s, _energy64(target), ev["monitor_samples"], reference,  # noqa: E731
                                      generator=monitor_gen)
    log.info("%s: %s, %d round(s) of %s iterations, batch %d", target_name, method, settings.rounds,
             list(settings.iterations[: settings.rounds]), settings.batch_size)
    options = {"target": target_name, "settings": asdict(settings), "monitor_samples": ev["monitor_samples"]}
    sampler, buffer, table, summary = train_sgds(_energy64(target), target.dim, settings, checkpoint_dir,
                                                 identity=config_hash(options), log=log, monitor=monitor)
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
                 metrics: str | Path, samples: str | Path, rule: str = "evaluate_sgds",
                 log: logging.Logger | None = None) -> dict[str, Any]:
    """ELBO, EUBO, gap, log Z errors, W2 and energy W2 of a trained Learner; writes one metrics row
    (with the energy calls its training spent) and the forward samples."""
    log = log or logging.getLogger("boltzflow.sgds")
    target = sgds_target(target_name)
    sampler, saved = load_sampler(model)
    if sampler.dim != target.dim:
        raise ValueError(f"{model}: a sampler of dimension {sampler.dim}, target {target_name} has {target.dim}")
    ev = sgds_cfg["evaluation"]
    reference = reference_samples(target, ev["n_reference"], ev["seed"])
    gen = torch.Generator().manual_seed(int(ev["seed"]) + 2)
    values = evaluate_sampler(sampler, _energy64(target), ev["n_samples"], reference=reference, log_z=target.log_z,
                              generator=gen, w2_points=ev["w2_points"])
    row = {"target": target_name, "method": method, "seed": seed, "dim": target.dim,
           "energy_calls": int(saved["energy_calls"]), "searcher_calls": int(saved["searcher_calls"]),
           "learner_calls": int(saved["learner_calls"]), "log_z_true": target.log_z, **values}
    log.info("%s %s seed %d: %s", target_name, method, seed,
             {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    meta = provenance(rule, {"evaluation": dict(ev)}, seed=seed, target=target_name, method=method)
    write_table(metrics, pd.DataFrame([row]), meta)
    x = sampler.sample(ev["n_samples"], torch.Generator().manual_seed(int(ev["seed"]) + 3)).to(torch.float64)
    write_table(samples, pd.DataFrame(x.numpy(), columns=[f"x{i}" for i in range(x.shape[1])]), meta)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    from boltzflow.config import layered_section
    from boltzflow.io import ArtifactError
    from boltzflow.sgds.train import SGDS_METHODS

    parser = argparse.ArgumentParser(prog="python -m boltzflow.sgds.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="config files layered on config/config.yaml")
    parser.add_argument("--target", required=True, help="a synthetic target with an exact sampler")
    parser.add_argument("--method", required=True, choices=SGDS_METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iterations", type=int, nargs="+", help="override the Learner iterations per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr)
    try:
        cfg = layered_section(args.configfile, "sgds")
    except (OSError, ValueError) as err:  # ConfigError is a ValueError
        parser.exit(2, f"error: {err}\n")
    if args.iterations is not None:
        if min(args.iterations) < 1:
            parser.error(f"--iterations must be >= 1, got {args.iterations}")
        cfg.setdefault("per_target", {}).setdefault(args.target, {})["iterations"] = list(args.iterations)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        train_run(cfg, args.target, args.method, args.seed, model=out / "model.pt", history=out / "history.parquet",
                  checkpoint_dir=out / "checkpoint")
        row = evaluate_run(cfg, args.target, args.method, args.seed, model=out / "model.pt",
                           metrics=out / "metrics.parquet", samples=out / "samples.parquet")
    except (ArtifactError, ValueError) as err:
        parser.exit(1, f"error: {err}\n")
    print(json.dumps(row, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
