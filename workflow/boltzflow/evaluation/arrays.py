"""Input checks shared by the evaluation modules: arrays (numpy or torch) as float64 numpy arrays,
finite values and log-weights, each refused with a message that names the argument and counts
the bad entries."""

from __future__ import annotations

from typing import Any

import numpy as np


def _array(a: Any, dtype: Any = np.float64) -> np.ndarray:
    """``a`` as a numpy array of ``dtype`` (torch tensors are detached and moved to the CPU; this
    module does not import torch, so that tables and plots load without it)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _log_weights(log_w: Any, name: str = "log_w", n: int | None = None) -> np.ndarray:
    """1-D float64 log-weights; raise on NaN / ``+inf`` with counts, on a wrong length, on none."""
    lw = _array(log_w)
    expected = "(N,)" if n is None else f"({n},)"
    if lw.ndim != 1 or (n is not None and lw.shape[0] != n):
        raise ValueError(f"{name} has shape {lw.shape}, expected {expected}")
    if lw.size == 0:
        raise ValueError(f"{name} is empty")
    n_nan, n_pinf = int(np.isnan(lw).sum()), int(np.isposinf(lw).sum())
    if n_nan or n_pinf:
        raise ValueError(f"{name}: {n_nan} NaN and {n_pinf} +inf values among {lw.size}; "
                         "drop or fix them first (and report how many)")
    return lw


def _finite(values: Any, name: str, shape: str, ndim: int) -> np.ndarray:
    """Non-empty float64 array of ``ndim`` dimensions with only finite entries."""
    a = _array(values)
    if a.ndim != ndim:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty, expected {shape} with N >= 1")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = int(bad.reshape(a.shape[0], -1).any(axis=1).sum())
        raise ValueError(f"{name}: {int(bad.sum())} non-finite values (in {rows} of {a.shape[0]} rows); "
                         "drop them first (and report how many)")
    return a
