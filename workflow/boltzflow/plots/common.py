"""What every figure shares: saving it atomically in each requested format, and a placeholder figure
for an output whose data a run does not have."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt

from boltzflow.io import atomic_path

__all__ = ["save_figure", "note_figure"]


def save_figure(fig: plt.Figure, paths: Sequence[str | os.PathLike]) -> None:
    """Save ``fig`` to each path (format from the suffix), atomically, then close it."""
    for path in paths:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, bbox_inches="tight")
    plt.close(fig)


def note_figure(text: str, paths: Sequence[str | os.PathLike]) -> None:
    """A figure holding only a note, for an output whose data this run does not have."""
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    save_figure(fig, paths)
