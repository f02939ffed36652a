"""RegFlow experiments on a molecular system: from MD frames to regression pairs to trained flows.

The steps the workflow runs, each a function here that a rule's script calls:

1. :func:`latent_frame` fixes the flow's coordinate frame from the training frames: the body frame
   (rigid motions out, whitened internal Cartesian coordinates, :mod:`boltzflow.flows.body`) or
   the centroid frame (centroid-free Helmert coordinates scaled by their root mean square,
   :mod:`boltzflow.flows.cartesian`); rule ``flow_frame`` writes it once per system and every
   later step reads that file;
2. :func:`make_ot_pairs` pairs prior draws with the training frames by exact OT, or
   :func:`fit_cnf` trains the flow-matching teacher and :func:`make_cnf_pairs` integrates it;
3. :func:`fit_flow` trains a coupling flow by RegFlow (on pairs) or MLE (on the frames), and
   measures its invertibility.

Every artifact records the fingerprint of the frame it lives in; a consumer refuses pairs made in
another frame.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from boltzflow.cnf import VelocityField, flow_matching_loss
from boltzflow.couplings import cnf_pairs, ot_pairs
from boltzflow.flows import CartesianFrame, Flow, build_flow, frame_from_config
from boltzflow.flows.body import choose_reference_atoms, fit_body_frame
from boltzflow.io import ArtifactError, atomic_path, config_hash
from boltzflow.training.loop import TrainSettings, invertibility_report, mle_loss, regflow_loss, train
from boltzflow.units import resolve_device

__all__ = ["latent_frame", "frame_fingerprint", "write_frame", "read_frame", "to_latent", "make_ot_pairs", "fit_flow", "fit_cnf", "make_cnf_pairs",
           "check_same_frame", "flow_architecture", "save_cnf", "load_cnf"]


FRAME_KINDS = ("body", "centroid")


def latent_frame(train_x: np.ndarray, n_atoms: int, kind: str = "body", topology=None,
                 reference_atoms: list[int] | None = None) -> dict[str, Any]:
    """The frame config fitted to training frames ``train_x`` ``(n, 3 N)`` (nm).

    ``kind="body"``: :func:`~boltzflow.flows.body.fit_body_frame` with ``reference_atoms`` (or
    those :func:`~boltzflow.flows.body.choose_reference_atoms` picks from ``topology``);
    ``kind="centroid"``: ``{"kind": "cartesian", "n_atoms", "scale"}``.
    """

    train_x = np.asarray(train_x)
    if train_x.ndim != 2 or train_x.shape[1] != 3 * n_atoms:
        raise ValueError(f"training frames must have shape (n, {3 * n_atoms}), got {train_x.shape}")
    if kind == "centroid":
        return {"kind": "cartesian", "n_atoms": int(n_atoms), "scale": CartesianFrame.fit_scale(train_x, n_atoms)}
    if kind != "body":
        raise ValueError(f"frame kind must be one of {', '.join(FRAME_KINDS)}, got {kind!r}")
    if reference_atoms is None:
        if topology is None:
            raise ValueError("a body frame needs reference atoms or a topology to choose them from")
        reference_atoms = choose_reference_atoms(topology)
    return fit_body_frame(train_x, n_atoms, reference_atoms)


def frame_fingerprint(frame_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a frame in other artifacts' metadata: kind, atoms, latent dimension and a
    hash of every number in it."""

    frame = frame_from_config(frame_cfg)
    return {"kind": frame_cfg["kind"], "n_atoms": int(frame_cfg["n_atoms"]), "dim": frame.dim,
            "reference_atoms": list(frame_cfg.get("reference_atoms", [])), "hash": config_hash(dict(frame_cfg))}


def write_frame(path: str | Path, frame_cfg: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    """The frame as JSON (``{"frame": ..., "fingerprint": ..., "provenance": ...}``), atomically."""
    import json


    payload = {"frame": dict(frame_cfg), "fingerprint": frame_fingerprint(frame_cfg), "provenance": dict(provenance)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, default=str))


def read_frame(path: str | Path, n_atoms: int | None = None) -> dict[str, Any]:
    """A frame written by :func:`write_frame`; a bad file raises ``ArtifactError`` naming it."""
    import json


    try:
        cfg = json.loads(Path(path).read_text())["frame"]
        frame_from_config(cfg)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ArtifactError(f"{path}: not a readable flow frame ({err})") from err
    if n_atoms is not None and int(cfg["n_atoms"]) != n_atoms:
        raise ArtifactError(f"{path}: a frame of {cfg['n_atoms']} atoms, but the data have {n_atoms}")
    return cfg


def check_same_frame(expected: Mapping[str, Any], found: Mapping[str, Any], source: str) -> None:
    """Refuse an artifact made in another frame: ``found`` is the fingerprint recorded in it,
    ``expected`` the frame config in use."""

    want = frame_fingerprint(expected)
    if dict(found or {}) != want:
        raise ArtifactError(f"{source}: made in frame {dict(found or {})}, but the current frame is {want} "
                            "(regenerate it from the current data and frame)")


def to_latent(x: np.ndarray, frame_cfg: Mapping[str, Any]) -> np.ndarray:
    """Latent coordinates (float64) of Cartesian frames ``x`` (nm) in the frame ``frame_cfg``."""
    frame = frame_from_config(frame_cfg)
    with torch.no_grad():
        return frame.to_latent(torch.as_tensor(np.asarray(x), dtype=torch.float64)).numpy()


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
    identity: str = "",
    device: str = "cpu",
    log: logging.Logger | None = None,
) -> tuple[Flow, pd.DataFrame, dict[str, Any]]:
    """Train a flow by ``method`` (``regflow`` on ``pairs``, ``mle`` on ``train_x``) on ``device``
    (``auto``, ``cpu``, ``cuda``); returns the EMA model (on the CPU), the history and a summary
    with the invertibility report."""

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
    model, history, summary = train(flow, objective, data, settings, checkpoint_dir, identity=identity, log=log)
    model = model.cpu()
    inv = dict(invertibility or {})
    report = invertibility_report(model, n=int(inv.get("samples", 10_000)), seed=settings.seed,
                                  tolerance=float(inv.get("tolerance", 1e-3)))
    log.info("invertibility: max |f^-1(f(z)) - z| %.2e (float32), %.2e (float64)%s", report["max_error_float32"],
             report["max_error_float64"], " -- FLAGGED" if report["flagged"] else "")
    summary = {**summary, "method": method, "parameters": sum(p.numel() for p in model.parameters()),
               "invertibility": report}
    return model, history, summary


def fit_cnf(train_latent: np.ndarray, *, hidden: int, layers: int, settings: TrainSettings,
            checkpoint_dir: str | Path, identity: str = "", device: str = "cpu",
            log: logging.Logger | None = None):
    """Train the flow-matching CNF teacher on latent training data (independent prior pairing);
    returns the EMA model on the CPU, the history and a summary."""

    torch.manual_seed(settings.seed)
    where = resolve_device(device)
    model = VelocityField(train_latent.shape[1], hidden=hidden, layers=layers).to(where)

    def objective(net, batch, generator):
        x1 = batch["x1"]
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        loss = flow_matching_loss(net, x0, x1, generator=generator)
        return loss, {"flow_matching": float(loss.detach())}

    data = {"x1": torch.as_tensor(train_latent, dtype=torch.float32).to(where)}
    trained, history, summary = train(model, objective, data, settings, checkpoint_dir, identity=identity, log=log)
    return trained.cpu(), history, summary


def make_cnf_pairs(model, n_pairs: int, *, batch_size: int, seed: int, method: str, atol: float, rtol: float,
                   log: logging.Logger | None = None):
    """Reflow pairs from a trained CNF (see :func:`boltzflow.couplings.cnf_pairs`)."""

    return cnf_pairs(model, n_pairs, batch_size=batch_size, seed=seed, method=method, atol=atol, rtol=rtol, log=log)


def save_cnf(model, path: str | Path, extra: Mapping[str, Any]) -> None:
    """Write the CNF's architecture, weights and ``extra`` (stored as JSON) atomically."""
    import json


    payload = {"config": model.config(), "state_dict": model.state_dict(), "extra": json.dumps(extra, default=str)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_cnf(path: str | Path):
    """The CNF saved by :func:`save_cnf` (``weights_only=True``) and its ``extra`` dict."""
    import json


    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = VelocityField(**payload["config"])
        model.load_state_dict(payload["state_dict"])
        extra = json.loads(payload["extra"])
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable CNF checkpoint ({err})") from err
    model.eval()
    return model, extra
