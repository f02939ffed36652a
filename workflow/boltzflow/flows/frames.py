"""The flow's coordinate frame fitted to training data, stored as JSON and fingerprinted.

A frame (:class:`~boltzflow.flows.body.BodyFrame`, :class:`~boltzflow.flows.internal.InternalFrame` or
:class:`~boltzflow.flows.cartesian.CartesianFrame`)
is fitted once per system from the training frames (rule ``flow_frame``); every later artifact
records its fingerprint, and a consumer refuses pairs or models made in another frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from boltzflow.flows.body import choose_reference_atoms, fit_body_frame
from boltzflow.flows.cartesian import CartesianFrame
from boltzflow.flows.internal import fit_internal_frame, topology_bonds
from boltzflow.flows.model import frame_from_config
from boltzflow.io import ArtifactError, atomic_path, config_hash

__all__ = ["FRAME_KINDS", "latent_frame", "frame_fingerprint", "write_frame", "read_frame", "check_same_frame",
           "to_latent"]

FRAME_KINDS = ("body", "internal", "centroid")


def latent_frame(train_x: np.ndarray, n_atoms: int, kind: str = "body", topology=None,
                 reference_atoms: list[int] | None = None, torsion_map: str = "standardised") -> dict[str, Any]:
    """The frame config fitted to training frames ``train_x`` ``(n, 3 N)`` (nm).

    ``kind="body"``: :func:`~boltzflow.flows.body.fit_body_frame` with ``reference_atoms`` (or
    those :func:`~boltzflow.flows.body.choose_reference_atoms` picks from ``topology``);
    ``kind="internal"``: :func:`~boltzflow.flows.internal.fit_internal_frame` on the same reference
    atoms and the topology's bonds, its torsions through ``torsion_map``; ``kind="centroid"``: ``{"kind": "cartesian", "n_atoms", "scale"}``.
    """

    train_x = np.asarray(train_x)
    if train_x.ndim != 2 or train_x.shape[1] != 3 * n_atoms:
        raise ValueError(f"training frames must have shape (n, {3 * n_atoms}), got {train_x.shape}")
    if kind == "centroid":
        return {"kind": "cartesian", "n_atoms": int(n_atoms), "scale": CartesianFrame.fit_scale(train_x, n_atoms)}
    if kind not in FRAME_KINDS:
        raise ValueError(f"frame kind must be one of {', '.join(FRAME_KINDS)}, got {kind!r}")
    if reference_atoms is None:
        if topology is None:
            raise ValueError(f"a {kind} frame needs reference atoms or a topology to choose them from")
        reference_atoms = choose_reference_atoms(topology)
    if kind == "internal":
        if topology is None:
            raise ValueError("an internal frame needs the topology (its bonds make the Z-matrix)")
        bonds, heavy = topology_bonds(topology)
        return fit_internal_frame(train_x, n_atoms, reference_atoms, bonds, heavy, torsion_map=torsion_map)
    return fit_body_frame(train_x, n_atoms, reference_atoms)


def frame_fingerprint(frame_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What identifies a frame in other artifacts' metadata: kind, atoms, latent dimension and a
    hash of every number in it."""

    frame = frame_from_config(frame_cfg)
    return {"kind": frame_cfg["kind"], "n_atoms": int(frame_cfg["n_atoms"]), "dim": frame.dim,
            "reference_atoms": list(frame_cfg.get("reference_atoms", [])), "hash": config_hash(dict(frame_cfg))}


def write_frame(path: str | Path, frame_cfg: Mapping[str, Any], provenance: Mapping[str, Any]) -> None:
    """The frame as JSON (``{"frame": ..., "fingerprint": ..., "provenance": ...}``), atomically."""
    payload = {"frame": dict(frame_cfg), "fingerprint": frame_fingerprint(frame_cfg), "provenance": dict(provenance)}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, default=str))


def read_frame(path: str | Path, n_atoms: int | None = None) -> dict[str, Any]:
    """A frame written by :func:`write_frame`; a bad file raises ``ArtifactError`` naming it."""
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
