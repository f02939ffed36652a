"""Deterministic train/validation/test splits of trajectory data.

The rule: within each replica, frames are taken in time order and cut into three contiguous
blocks, train first, then validation, then test, with sizes ``floor(fraction * n)`` for train
and validation and the rest for test. Contiguous blocks keep strongly correlated neighbouring
frames on one side of each cut (a random split would leak near-duplicates from train into
test), and the split depends on nothing but the data and the fractions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from boltzflow.io import ArtifactError, read_sample_set, read_table

__all__ = ["SPLITS", "block_split", "split_frames", "split_frames_and_energies"]

SPLITS = ("train", "val", "test")


def block_split(
    replica: np.ndarray, time_ps: np.ndarray, train: float, val: float, test: float
) -> pd.DataFrame:
    """A table ``frame, split`` assigning every row to ``train``, ``val`` or ``test``."""
    replica = np.asarray(replica)
    time_ps = np.asarray(time_ps)
    if replica.shape != time_ps.shape or replica.ndim != 1:
        raise ValueError("replica and time_ps must be 1-D arrays of the same length")
    if min(train, val, test) < 0 or abs(train + val + test - 1.0) > 1e-9:
        raise ValueError(f"fractions must be non-negative and sum to 1, got {train}, {val}, {test}")
    labels = np.empty(len(replica), dtype=object)
    for r in np.unique(replica):
        rows = np.flatnonzero(replica == r)
        rows = rows[np.argsort(time_ps[rows], kind="stable")]
        n = len(rows)
        n_train, n_val = int(np.floor(train * n)), int(np.floor(val * n))
        labels[rows[:n_train]] = "train"
        labels[rows[n_train : n_train + n_val]] = "val"
        labels[rows[n_train + n_val :]] = "test"
    return pd.DataFrame(
        {"frame": np.arange(len(replica), dtype=np.int64),
         "split": pd.Categorical(labels, categories=list(SPLITS))}
    )


def split_frames(frames_path, split_path, which: str = "train") -> np.ndarray:
    """Coordinates ``(n, dim)`` (float32, nm) of the frames of one split, in frame order.

    Errors name the file: a split table that does not cover exactly the frames of the sample set
    (e.g. made for another dataset) is refused.
    """
    return split_frames_and_energies(frames_path, split_path, which)[0]


def split_frames_and_energies(frames_path, split_path, which: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Coordinates ``(n, dim)`` (float32, nm) and energies ``(n,)`` (float64, kT) of the frames
    of one split, in frame order (see :func:`split_frames`)."""

    if which not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {which!r}")
    samples = read_sample_set(frames_path)
    table, _ = read_table(split_path, required=("frame", "split"))
    if len(table) != len(samples) or not np.array_equal(np.sort(table["frame"].to_numpy()), np.arange(len(samples))):
        raise ArtifactError(f"{split_path}: split covers {len(table)} frames, but {frames_path} has {len(samples)}")
    rows = np.sort(table["frame"].to_numpy()[table["split"].to_numpy() == which])
    if rows.size == 0:
        raise ArtifactError(f"{split_path}: no frames in split {which!r}")
    return samples.x[rows], samples.energy[rows]
