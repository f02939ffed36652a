"""The cross-method comparison as a figure: each metric against the energy calls spent, one panel
per target and metric, log axes, one line per method with its interval over seeds."""

from __future__ import annotations

import os
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from boltzflow.evaluation.tables import (
    SHOOTOUT_METHOD_NAMES,
    SHOOTOUT_METRICS,
    shootout_method_name,
)
from boltzflow.plots.common import save_figure

__all__ = ["shootout_figure"]

_PANEL_METRICS = ("w2", "energy_w1", "t_w2", "distance_w1", "log_z_error", "mode_tv", "well_tv")


def shootout_figure(table: pd.DataFrame, paths: Sequence[str | os.PathLike]) -> None:
    """Rows: targets; columns: the metrics of the table that have values (W2, energy W1, log Z
    error, mode-weight TV). x: mean energy calls of each (method, budget); y: the metric's mean
    with its 95 % interval over seeds as an error bar. The exact-samples floor is a dashed line."""
    targets = list(dict.fromkeys(table["target"]))
    metrics = [m for m in _PANEL_METRICS if f"{m}_mean" in table and table[f"{m}_mean"].notna().any()]
    if not targets or not metrics:
        raise ValueError("the shootout table has no target or no metric to plot")
    headings = {c: h for c, h, _ in SHOOTOUT_METRICS}
    fig, axes = plt.subplots(len(targets), len(metrics), figsize=(3.6 * len(metrics), 3.0 * len(targets)),
                             squeeze=False)
    methods = [m for m in SHOOTOUT_METHOD_NAMES if m != "exact" and m in set(table["method"])]
    colours = dict(zip(methods, plt.get_cmap("tab10").colors))
    for i, target in enumerate(targets):
        rows = table[table["target"] == target]
        kind = str(rows["kind"].iloc[0]) if "kind" in rows else "density"
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            if rows[f"{metric}_mean"].isna().all():  # e.g. mode weights of a target without modes listed
                ax.set_title(f"{target}: {headings[metric]}", fontsize=9)
                ax.text(0.5, 0.5, "not defined\nfor this target", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            floor = rows[(rows["method"] == "exact")][f"{metric}_mean"].dropna()
            if len(floor):
                ax.axhline(float(floor.iloc[0]), color="0.5", linestyle="--", linewidth=1,
                           label=shootout_method_name("exact", kind))
            for method in methods:
                sel = rows[rows["method"] == method].dropna(subset=[f"{metric}_mean"]).sort_values("energy_calls_mean")
                if sel.empty:
                    continue
                mean = sel[f"{metric}_mean"].to_numpy(float)
                low = sel.get(f"{metric}_low", sel[f"{metric}_mean"]).to_numpy(float)
                high = sel.get(f"{metric}_high", sel[f"{metric}_mean"]).to_numpy(float)
                ax.errorbar(sel["energy_calls_mean"].to_numpy(float), mean,
                            yerr=np.vstack([np.clip(mean - low, 0, None), np.clip(high - mean, 0, None)]),
                            marker="o", markersize=4, capsize=2, color=colours[method],
                            label=shootout_method_name(method, kind))
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            values = rows[f"{metric}_mean"].dropna()
            if len(values) and (values > 0).all():
                ax.set_yscale("log")
                if values.max() / values.min() > 10:  # within a decade the minor ticks carry the labels
                    ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel("energy calls")
            ax.set_ylabel(headings[metric])
            ax.set_title(f"{target}: {headings[metric]}", fontsize=9)
            ax.grid(True, which="both", alpha=0.2)
    legend: dict[str, Any] = {}  # every method of every target once (targets may compare different methods)
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    handles, labels = list(legend.values()), list(legend)
    fig.tight_layout()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    save_figure(fig, paths)
