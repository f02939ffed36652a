"""Figures of the EBM stage (flowMC-EBM paper): mode weights over training and learned 2-D
densities beside the truth."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from boltzflow.plots.common import note_figure, save_figure

__all__ = ["ebm_mode_weights_figure", "ebm_densities_figure"]


_EBM_COLOURS = {"flowmc": "tab:blue", "ula": "tab:orange"}


_EBM_NAMES = {"flowmc": "flowMC-EBM", "ula": "ULA-EBM"}


def _mode_columns(frame: pd.DataFrame, prefix: str) -> list[str]:
    return sorted((c for c in frame.columns if c.startswith(f"{prefix}_w")), key=lambda c: int(c.rsplit("w", 1)[1]))


def ebm_mode_weights_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame, pd.DataFrame]],
                            paths: Sequence[str | os.PathLike], max_modes: int = 8) -> None:
    """The weight of every mode of the EBM over training, per method (the flowMC-EBM paper's
    Fig. 1), one row per dataset with known modes, dashed lines at the true weights. ``runs``
    holds ``(dataset, method, seed, history, metrics)``."""
    with_modes = [r for r in runs if _mode_columns(r[3], "ebm") and len(_mode_columns(r[3], "ebm")) <= max_modes]
    datasets = list(dict.fromkeys(r[0] for r in with_modes))
    if not datasets:
        note_figure("no dataset with known modes in this run", paths)
        return
    n_modes = max(len(_mode_columns(r[3], "ebm")) for r in with_modes)
    fig, axes = plt.subplots(len(datasets), n_modes, figsize=(2.6 * n_modes, 2.3 * len(datasets)), squeeze=False,
                             sharex="row", layout="constrained")
    for i, dataset in enumerate(datasets):
        for ax in axes[i, len(_mode_columns([r for r in with_modes if r[0] == dataset][0][3], "ebm")):]:
            ax.axis("off")
        for _, method, seed, history, metrics in (r for r in with_modes if r[0] == dataset):
            for k, column in enumerate(_mode_columns(history, "ebm")):
                ax = axes[i, k]
                ax.plot(history["epoch"], history[column], color=_EBM_COLOURS.get(method, "k"), lw=1.2, alpha=0.9,
                        label=f"{_EBM_NAMES.get(method, method)} (seed {seed})")
                true = metrics.get(f"true_w{k}")
                if true is not None and len(true) and np.isfinite(true.iloc[0]):
                    ax.axhline(float(true.iloc[0]), color="k", ls="--", lw=0.8)
                ax.set_title(f"{dataset}: mode {k}", fontsize=9)
                ax.set_xlabel("epoch")
        axes[i, 0].set_ylabel("EBM mode weight")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncols=min(4, len(unique)), fontsize=8)
    save_figure(fig, paths)


def ebm_densities_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame, pd.DataFrame]],
                         paths: Sequence[str | os.PathLike], max_points: int = 3000) -> None:
    """Learned 2-D densities beside the truth: one row per 2-D dataset, the true density, then each
    run's EBM density (normalised on the grid) with a subsample of its persistent chains. ``runs``
    holds ``(dataset, method, seed, density_grid, chains)``."""
    two_d = [r for r in runs if len(r[3])]
    datasets = list(dict.fromkeys(r[0] for r in two_d))
    if not datasets:
        note_figure("no 2-D dataset in this run", paths)
        return
    n_cols = 1 + max(sum(r[0] == d for r in two_d) for d in datasets)
    fig, axes = plt.subplots(len(datasets), n_cols, figsize=(2.8 * n_cols, 2.8 * len(datasets)), squeeze=False,
                             layout="constrained")
    rng = np.random.default_rng(0)

    def show(ax, grid, column, title):
        xs, ys = np.unique(grid["x"]), np.unique(grid["y"])
        image = np.exp(grid[column].to_numpy()).reshape(len(ys), len(xs))
        ax.imshow(image, origin="lower", extent=(xs[0], xs[-1], ys[0], ys[-1]), cmap="viridis", aspect="auto")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])

    for i, dataset in enumerate(datasets):
        rows = [r for r in two_d if r[0] == dataset]
        if "log_p_true" in rows[0][3]:
            show(axes[i, 0], rows[0][3], "log_p_true", f"{dataset}: truth")
        else:
            axes[i, 0].axis("off")
        for j, (_, method, seed, grid, chains) in enumerate(rows, start=1):
            show(axes[i, j], grid, "log_p_model", f"{_EBM_NAMES.get(method, method)} (seed {seed})")
            pts = chains.to_numpy()[:, :2]
            pts = pts[rng.permutation(len(pts))[:max_points]]
            axes[i, j].scatter(pts[:, 0], pts[:, 1], s=0.3, c="w", alpha=0.5, linewidths=0)
            axes[i, j].set_xlim(grid["x"].min(), grid["x"].max())
            axes[i, j].set_ylim(grid["y"].min(), grid["y"].max())
        for ax in axes[i, len(rows) + 1:]:
            ax.axis("off")
    fig.suptitle("EBM densities (white: persistent chains)", fontsize=10)
    save_figure(fig, paths)
