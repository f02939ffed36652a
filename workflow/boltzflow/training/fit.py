"""RegFlow experiments on a molecular system: from MD frames to regression pairs to trained flows.

Each step is a function a rule's script calls: :func:`make_ot_pairs` pairs prior draws with the
training frames by exact OT, or :func:`fit_cnf` trains the flow-matching teacher and
``boltzflow.couplings`` integrates it into reflow pairs (in shards); :func:`fit_flow` trains a coupling flow by RegFlow (on pairs,
arXiv 2506.01158) or MLE (on the frames) and measures its invertibility. The coordinate frame they
work in comes from :mod:`boltzflow.flows.frames`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from boltzflow.cnf import VelocityField, flow_matching_loss
from boltzflow.couplings import ot_pairs, ot_permutation
from boltzflow.flows import Flow, build_flow, to_latent
from boltzflow.training.loop import TrainSettings, invertibility_report, train
from boltzflow.training.objectives import heldout_nll, mle_loss, regflow_loss
from boltzflow.units import resolve_device

__all__ = ["make_ot_pairs", "flow_architecture", "fit_flow", "fit_cnf"]


def make_ot_pairs(train_x: np.ndarray, frame_cfg: Mapping[str, Any], *, batch_size: int, n_pairs: int | None,
                  seed: int, log: logging.Logger | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Exact-OT pairs between prior draws and the training frames, in latent coordinates."""

    return ot_pairs(to_latent(train_x, frame_cfg), batch_size=batch_size, n_pairs=n_pairs, seed=seed, log=log)


def flow_architecture(transform: str, arch: Mapping[str, Any], frame_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The :func:`~boltzflow.flows.build_flow` config of one architecture in one frame."""
    return {"transform": transform, **dict(arch), "frame": dict(frame_cfg)}


def fit_flow(
    method: str,
    architecture: Mapping[str, Any],
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    *,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    train_x: np.ndarray | None = None,
    regflow: Mapping[str, Any] | None = None,
    invertibility: Mapping[str, Any] | None = None,
    validation_x: np.ndarray | None = None,
    keep_best: bool = False,
    identity: str = "",
    device: str = "cpu",
    log: logging.Logger | None = None,
) -> tuple[Flow, pd.DataFrame, dict[str, Any]]:
    """Train a flow by ``method`` (``regflow`` on ``pairs``, ``mle`` on ``train_x``) on ``device``
    (``auto``, ``cpu``, ``cuda``); returns the EMA model (on the CPU), the history and a summary
    with the invertibility report. With ``validation_x`` (held-out frames) the history logs their
    negative log-likelihood (``val_loss``, latent coordinates) at every row, and ``keep_best``
    returns the EMA weights where it was lowest."""

    log = log or logging.getLogger("boltzflow.regflow")
    torch.manual_seed(settings.seed)  # the network's initial weights
    flow = build_flow(architecture)
    dtype = flow.dtype
    where = resolve_device(device)
    if method == "regflow":
        if pairs is None:
            raise ValueError("RegFlow training needs pairs")
        options = dict(regflow or {})
        objective = regflow_loss(options.get("regulariser", "logdet"), float(options.get("lambda_reg", 1e-5)),
                                 float(options.get("target_noise", 0.0)))
        data = {"x0": torch.as_tensor(pairs[0], dtype=dtype), "x1": torch.as_tensor(pairs[1], dtype=dtype)}
    elif method == "mle":
        if train_x is None:
            raise ValueError("MLE training needs training frames")
        objective = mle_loss()
        data = {"x1": flow.frame.to_latent(torch.as_tensor(train_x, dtype=torch.float64)).to(dtype)}
    else:
        raise ValueError(f"method must be 'regflow' or 'mle', got {method!r}")
    log.info("training %s (%s) on %d %s, %d parameters, on %s", method, architecture["transform"],
             len(data["x1"]), "pairs" if method == "regflow" else "frames",
             sum(p.numel() for p in flow.parameters()), where)
    flow = flow.to(where)
    data = {k: v.to(where) for k, v in data.items()}
    validate = None
    if validation_x is not None and len(validation_x):
        held_out = flow.frame.to_latent(torch.as_tensor(validation_x, dtype=torch.float64)).to(where, dtype)

        def validate(averaged):
            return heldout_nll(averaged, held_out)
    model, history, summary = train(flow, objective, data, settings, checkpoint_dir, identity=identity,
                                    validate=validate, keep_best=keep_best, log=log)
    model = model.cpu()
    inv = dict(invertibility or {})
    report = invertibility_report(model, n=int(inv.get("samples", 10_000)), seed=settings.seed,
                                  tolerance=float(inv.get("tolerance", 1e-3)))
    log.info("invertibility: max |f^-1(f(z)) - z| %.2e (float32), %.2e (float64)%s", report["max_error_float32"],
             report["max_error_float64"], " -- FLAGGED" if report["flagged"] else "")
    summary = {**summary, "method": method, "parameters": sum(p.numel() for p in model.parameters()),
               "invertibility": report}
    return model, history, summary


#: how fit_cnf pairs each batch of data with prior draws
PRIOR_PAIRINGS = ("independent", "minibatch_ot")


def fit_cnf(x1: np.ndarray, *, hidden: int, layers: int, settings: TrainSettings,
            checkpoint_dir: str | Path, x0: np.ndarray | None = None, prior_pairing: str = "independent",
            identity: str = "", device: str = "cpu",
            log: logging.Logger | None = None) -> tuple[VelocityField, pd.DataFrame, dict[str, Any]]:
    """Train a flow-matching CNF on latent points ``x1`` ``(n, d)``; returns the EMA model on the
    CPU, the history and a summary.

    Without ``x0`` the source is the prior, drawn afresh for every batch (the CNF teacher of
    RegFlow). ``prior_pairing`` says how a batch's prior draws meet its data points:
    ``independent`` (row by row, plain flow matching) or ``minibatch_ot`` (the exact OT assignment
    of the batch, POT, squared Euclidean cost; Tong et al. 2024, Pooladian et al. 2023), whose
    straighter, shorter interpolants give a velocity field that fixed-step solvers integrate with
    fewer steps. With ``x0`` ``(n, d)`` the CNF learns to carry the points ``x0`` onto ``x1``
    from the given pairs (e.g. exact-OT pairs between two states, whose straight interpolants are
    short); unlike a regression onto those pairs, whose optimum is the blurred ``E[x1 | x0]``, its
    flow transports the distribution of ``x0`` onto that of ``x1``.
    """
    if prior_pairing not in PRIOR_PAIRINGS:
        raise ValueError(f"prior_pairing must be one of {PRIOR_PAIRINGS}, got {prior_pairing!r}")
    if x0 is not None and prior_pairing != "independent":
        raise ValueError("prior_pairing applies to prior draws; with given source points x0 the pairs are fixed")
    x1 = torch.as_tensor(np.asarray(x1, dtype=np.float64) if x0 is not None else x1, dtype=torch.float32)
    if x0 is not None:
        x0 = torch.as_tensor(np.asarray(x0, dtype=np.float64), dtype=torch.float32)
        if x0.shape != x1.shape:
            raise ValueError(f"x1 has shape {tuple(x1.shape)}, expected {tuple(x0.shape)} like x0")
    torch.manual_seed(settings.seed)
    where = resolve_device(device)
    model = VelocityField(x1.shape[1], hidden=hidden, layers=layers).to(where)

    def objective(net, batch, generator):
        target = batch["x1"]
        source = batch["x0"] if "x0" in batch else torch.randn(target.shape, generator=generator,
                                                               dtype=target.dtype, device=target.device)
        if prior_pairing == "minibatch_ot":  # source[i] meets target[perm[i]]
            perm, _ = ot_permutation(source.detach().cpu().numpy(), target.detach().cpu().numpy())
            target = target[torch.as_tensor(perm, device=target.device)]
        loss = flow_matching_loss(net, source, target, generator=generator)
        return loss, {"flow_matching": float(loss.detach())}

    data = {"x1": x1.to(where)} if x0 is None else {"x0": x0.to(where), "x1": x1.to(where)}
    trained, history, summary = train(model, objective, data, settings, checkpoint_dir, identity=identity, log=log)
    return trained.cpu(), history, summary

