"""One EBM run end to end: train (rule ``train_ebm``), then the paper's metrics (rule
``evaluate_ebm``), from the workflow's rule scripts or from the command line (``python -m
boltzflow.ebm.run``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from boltzflow.cli import parse_stage, stage_parser
from boltzflow.config import DEFAULT_CONFIG, layered_section
from boltzflow.ebm.data import load_dataset
from boltzflow.ebm.evaluate import evaluate_ebm, late_training_mse
from boltzflow.ebm.model import load_ebm_model, save_ebm_model
from boltzflow.ebm.settings import RunConfig, known_dataset_names, resolve_run
from boltzflow.ebm.train import train_ebm
from boltzflow.io import ArtifactError, config_hash, provenance, read_table, write_table

__all__ = ["train_run", "evaluate_run", "ebm_section", "main"]

def _run_and_data(ebm_cfg: Mapping[str, Any], dataset: str, method: str, seed: int):
    """The run's settings and its data; for a user's array the epochs count its own rows."""
    run = resolve_run(ebm_cfg, dataset, method, seed)
    data = load_dataset(ebm_cfg, dataset, run.n_data)
    if dataset in ebm_cfg.get("user_data", {}):
        run = resolve_run(ebm_cfg, dataset, method, seed, n_data=len(data.x))
    return run, data


def train_run(ebm_cfg: Mapping[str, Any], dataset: str, method: str, seed: int, *, model: str | Path,
              history: str | Path, chains: str | Path, checkpoint_dir: str | Path, rule: str = "train_ebm",
              log: logging.Logger | None = None) -> RunConfig:
    """Train one EBM and its flow; write the model, the history and the persistent chains.

    The checkpoint folder is removed once the model is written (nothing is left to resume)."""
    log = log or logging.getLogger("boltzflow.ebm")
    run, data = _run_and_data(ebm_cfg, dataset, method, seed)
    log.info("%s: %d points in %d dimensions; %d iterations (%g epochs) of %s", dataset, len(data.x),
             data.x.shape[1], run.settings.iterations, run.epochs, method)
    options = {"dataset": dataset, "run": run.as_dict(), "user_data": ebm_cfg["user_data"].get(dataset),
               "mixture_weights": ebm_cfg["mixture_weights"] if dataset == "mixture2d_weights" else None}
    ebm, flow, bank, table, summary = train_ebm(
        torch.as_tensor(data.x), run.settings, run.energy, run.flow, checkpoint_dir,
        centres=data.centres, box=data.box, grid_points=ebm_cfg["evaluation"]["history_grid_points"],
        identity=config_hash(options), log=log)
    meta = provenance(rule, options, seed=seed, dataset=dataset, method=method, dim=int(data.x.shape[1]),
                      summary=summary)
    write_table(history, table, meta)
    frame = pd.DataFrame(bank.to(torch.float64).numpy(), columns=[f"x{i}" for i in range(bank.shape[1])])
    write_table(chains, frame, meta)
    save_ebm_model(model, ebm, flow, extra={"settings": json.dumps(run.as_dict()),
                                            "local_state": json.dumps(summary["local_state"]),
                                            "provenance": json.dumps(meta, default=str)})
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return run


def evaluate_run(ebm_cfg: Mapping[str, Any], dataset: str, method: str, seed: int, *, model: str | Path,
                 chains: str | Path, history: str | Path, metrics: str | Path, density: str | Path,
                 rule: str = "evaluate_ebm", log: logging.Logger | None = None) -> dict[str, Any]:
    """The paper's metrics of a trained EBM (see :func:`boltzflow.ebm.evaluate_ebm`), plus the
    late-training spread of its mode-weight MSE from the history (:func:`boltzflow.ebm.late_training_mse`);
    writes one metrics row and the 2-D density grid (empty in other dimensions) and returns the row."""
    log = log or logging.getLogger("boltzflow.ebm")
    run, data = _run_and_data(ebm_cfg, dataset, method, seed)
    ebm, flow, saved = load_ebm_model(model)
    frame, _ = read_table(chains)
    bank = torch.tensor(frame.to_numpy(), dtype=torch.float32)
    if bank.shape[1] != ebm.dim:
        raise ValueError(f"{chains}: chains have {bank.shape[1]} coordinates, the EBM in {model} has {ebm.dim}")
    ev = ebm_cfg["evaluation"]
    values, grid = evaluate_ebm(ebm, flow, bank, run.settings, centres=data.centres, true_weights=data.weights,
                                true_log_prob=data.log_prob, box=data.box, grid_points=ev["grid_points"],
                                n_eval=ev["n_eval"], rhat_chains=ev["rhat_chains"], rhat_cycles=ev["rhat_cycles"],
                                rhat_max_draws=ev["rhat_max_draws"],
                                support_fraction=ev["support_fraction"], seed=ev["seed"],
                                local_state=json.loads(saved["local_state"]) if "local_state" in saved else None)
    if data.weights is not None and ebm.dim == 2:  # history weights are grid integrals of the EBM only in 2-D
        values.update(late_training_mse(read_table(history)[0], data.weights))
    log.info("%s %s seed %d: %s", dataset, method, seed, {k: round(v, 6) for k, v in values.items()})
    meta = provenance(rule, {"run": run.as_dict(), "evaluation": ev}, seed=seed, dataset=dataset, method=method)
    row = {"dataset": dataset, "method": method, "seed": seed, "dim": ebm.dim, **values}
    write_table(metrics, pd.DataFrame([row]), meta)
    empty = pd.DataFrame({"x": [], "y": [], "log_p_model": []})
    write_table(density, grid if grid is not None else empty, meta)
    return row


def ebm_section(configfiles: Sequence[str | Path], base: str | Path | None = DEFAULT_CONFIG,
                schema: str | Path | None = None) -> dict[str, Any]:
    """The validated ``ebm`` section of ``base`` with ``configfiles`` layered on top."""

    return layered_section(configfiles, "ebm", base, schema)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one (dataset, method, seed) without Snakemake, for a machine where only the library is
    installed (a GPU node, a notebook)::

        python -m boltzflow.ebm.run --configfile config/paper/ebm.yaml --dataset gmm4_d16 \\
            --method flowmc --out results/one_ebm/gmm4_d16-flowmc [--epochs 20] [--threads 2]

    Config files are layered on ``config/config.yaml`` as Snakemake layers them, and the ``ebm``
    section is checked against its schema (defaults filled, unknown keys named) before anything
    runs. The outputs are those of the rules: ``model.pt``, ``history.parquet``,
    ``chains.parquet``, ``metrics.parquet``, ``density.parquet``; an interrupted run resumes from
    ``checkpoint/``.
    """
    parser = stage_parser("python -m boltzflow.ebm.run", __doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="an ebm.datasets name (a synthetic target or user data)")
    parser.add_argument("--method", required=True, choices=["flowmc", "ula"])
    parser.add_argument("--epochs", type=float, help="override the run's number of epochs")
    args, cfg = parse_stage(parser, argv, "ebm")
    known = known_dataset_names(cfg)
    if args.dataset not in known:
        parser.error(f"--dataset: unknown dataset {args.dataset!r}; known: {', '.join(sorted(known))}")
    if args.epochs is not None:
        if not args.epochs > 0:
            parser.error(f"--epochs must be > 0, got {args.epochs}")
        cfg.setdefault("per_dataset", {}).setdefault(args.dataset, {}).setdefault("train", {})["epochs"] = args.epochs
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        _run(cfg, args, out)
    except (ArtifactError, ValueError) as err:
        parser.exit(1, f"error: {err}\n")
    return 0


def _run(cfg: Mapping[str, Any], args: argparse.Namespace, out: Path) -> None:
    train_run(cfg, args.dataset, args.method, args.seed, model=out / "model.pt", history=out / "history.parquet",
              chains=out / "chains.parquet", checkpoint_dir=out / "checkpoint")
    row = evaluate_run(cfg, args.dataset, args.method, args.seed, model=out / "model.pt",
                       chains=out / "chains.parquet", history=out / "history.parquet", metrics=out / "metrics.parquet",
                       density=out / "density.parquet")
    print(json.dumps(row, default=float))


if __name__ == "__main__":
    sys.exit(main())
