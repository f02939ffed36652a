"""Saving and loading a :class:`~boltzflow.cnf.model.VelocityField` with its architecture and metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from boltzflow.cnf.model import VelocityField
from boltzflow.io import ArtifactError, atomic_path

__all__ = ["save_cnf", "load_cnf"]


def save_cnf(model: VelocityField, path: str | Path, extra: Mapping[str, Any]) -> None:
    """Write the CNF's architecture, weights and ``extra`` (stored as JSON) atomically."""
    payload = {"config": model.config(), "state_dict": model.state_dict(), "extra": json.dumps(extra, default=str)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_cnf(path: str | Path) -> tuple[VelocityField, dict[str, Any]]:
    """The CNF saved by :func:`save_cnf` (``weights_only=True``) and its ``extra`` dict."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = VelocityField(**payload["config"])
        model.load_state_dict(payload["state_dict"])
        extra = json.loads(payload["extra"])
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable CNF checkpoint ({err})") from err
    model.eval()
    return model, extra
