"""The data an EBM learns from: exact samples of a synthetic target (with its modes, weights and
normalised density where known) or a user's ``(N, d)`` array (``.npy``, ``.csv``, ``.parquet``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from boltzflow.io import ArtifactError
from boltzflow.targets import load_target

__all__ = ["Dataset", "load_dataset"]


@dataclass
class Dataset:
    """Training data of an EBM run and what is known about its density.

    >>> data = Dataset("toy", np.zeros((3, 2)))
    >>> data.x.shape, data.centres
    ((3, 2), None)
    """

    name: str
    x: np.ndarray                              # (N, d) float64
    centres: np.ndarray | None = None          # (K, d) mode centres of a mixture target
    weights: np.ndarray | None = None          # (K,) their true weights
    log_prob: Any = None                       # exact normalised log-density (torch, float64) or None
    box: tuple[np.ndarray, np.ndarray] | None = None  # plotting / integration box (2-D)


def _read_array(path: str | Path) -> np.ndarray:

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: user data file not found")
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            x = np.loadtxt(path, delimiter=",", ndmin=2)
        elif path.suffix == ".parquet":
            x = pd.read_parquet(path).to_numpy()
        else:
            raise ArtifactError(f"{path}: user data must be .npy, .csv or .parquet")
    except ArtifactError:
        raise
    except Exception as err:
        raise ArtifactError(f"{path}: cannot read user data ({err})") from err
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ArtifactError(f"{path}: user data must be an (N, d) array with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ArtifactError(f"{path}: user data holds {int((~np.isfinite(x)).sum())} non-finite values")
    return x


def load_dataset(ebm_cfg: Mapping[str, Any], name: str, n_data: int, seed: int = 0) -> Dataset:
    """The data of ``ebm.datasets`` entry ``name``: a user array, or ``n_data`` exact samples of a
    synthetic target (seeded by ``seed``)."""

    user = ebm_cfg.get("user_data", {})
    if name in user:
        x = _read_array(user[name])
        return Dataset(name, x, box=_box(x) if x.shape[1] == 2 else None)
    overrides = {"weights": tuple(ebm_cfg["mixture_weights"])} if name == "mixture2d_weights" else {}
    target = load_target(name, **overrides)
    gen = torch.Generator().manual_seed(int(seed))
    try:
        x = target.sample(int(n_data), generator=gen).to(torch.float64).numpy()
    except NotImplementedError as err:
        raise ValueError(f"ebm.datasets: target {name!r} has no exact sampler; give data in ebm.user_data") from err
    centres = getattr(target, "means", None)
    weights = getattr(target, "weights", None)
    if target.log_z is not None:
        def log_prob(x, _t=target):
            return -_t.energy(x.to(torch.float64)) - _t.log_z
    else:
        log_prob = None
    return Dataset(name, x, None if centres is None else centres.numpy(), None if weights is None else weights.numpy(),
                   log_prob, _box(x) if x.shape[1] == 2 else None)


def _box(x: np.ndarray, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = x.min(0), x.max(0)
    pad = margin * (hi - lo).max()
    return lo - pad, hi + pad
