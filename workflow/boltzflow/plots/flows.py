"""Figures of the flow stages (RegFlow paper): flow samples against MD, the regulariser,
pair-count and teacher-length ablation, the free-energy estimates of targeted FEP, and the CNF teacher's quality
against its training time."""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from boltzflow.plots.common import save_figure

__all__ = ["flow_samples_figure", "ablation_figure", "fep_figure", "teacher_budget_figure"]


def _free_energy_panel(ax, phi: np.ndarray, psi: np.ndarray, edges: np.ndarray, vmax: float = 12.0):
    hist, _, _ = np.histogram2d(np.degrees(phi), np.degrees(psi), bins=[edges, edges], density=True)
    with np.errstate(divide="ignore"):
        free = -np.log(hist)
    if np.isfinite(free).any():
        free -= np.nanmin(free[np.isfinite(free)])
    mesh = ax.pcolormesh(edges, edges, np.where(np.isfinite(free), free, np.nan).T, cmap="viridis",
                         shading="flat", vmin=0, vmax=vmax)
    ax.set_xticks(range(-180, 181, 90))
    ax.set_yticks(range(-180, 181, 90))
    ax.set_aspect("equal")
    return mesh


def flow_samples_figure(reference_energy: np.ndarray, reference_dihedrals: pd.DataFrame,
                        models: dict[str, dict[str, dict[str, object]]], paths: Sequence[str | os.PathLike],
                        title: str, bins: int = 60) -> None:
    """MD against the flows (the RegFlow paper's Fig. 2): one row per architecture; in each row
    the energy histograms (MD, and every method's reweighted and raw samples) and the
    Ramachandran plots of the first residue's (phi, psi) for MD and every method.

    ``models[architecture][method]`` holds ``resampled`` (a table with ``energy`` and dihedral
    columns of the SNIS-resampled points, possibly empty), ``raw_energy`` (the proposals'
    energies) and ``label``.
    """
    phi = next((c for c in reference_dihedrals.columns if c.startswith("phi_")), None)
    if phi is None or "psi" + phi[3:] not in reference_dihedrals:
        raise ValueError("no matching phi/psi columns to plot")
    psi = "psi" + phi[3:]
    methods = sorted({m for per_arch in models.values() for m in per_arch})
    n_cols = 2 + len(methods)
    fig, axes = plt.subplots(len(models), n_cols, figsize=(3.6 * n_cols, 3.4 * len(models)), squeeze=False,
                             layout="constrained")
    edges = np.linspace(-180.0, 180.0, bins + 1)
    ref_u = np.asarray(reference_energy, dtype=np.float64)
    lo, hi = np.quantile(ref_u, [0.001, 0.999])
    span = hi - lo
    u_edges = np.linspace(lo - 0.5 * span, hi + 1.0 * span, 80)
    colours = dict(zip(methods, ("tab:red", "tab:blue", "tab:green", "tab:purple")))
    mesh = None
    for row, (arch, per_method) in zip(axes, sorted(models.items())):
        ax = row[0]
        ax.hist(ref_u, bins=u_edges, density=True, color="0.3", alpha=0.45, label="MD")
        for method, data in sorted(per_method.items()):
            resampled = data["resampled"]
            if len(resampled):
                ax.hist(np.clip(resampled["energy"], u_edges[0], u_edges[-1]), bins=u_edges, density=True,
                        histtype="step", color=colours[method], label=f"{data['label']} (reweighted)")
            raw = np.asarray(data["raw_energy"], dtype=np.float64)
            ax.hist(np.clip(raw[np.isfinite(raw)], u_edges[0], u_edges[-1]), bins=u_edges, density=True,
                    histtype="step", linestyle=":", color=colours[method], label=f"{data['label']} (raw)")
        ax.set_xlabel("reduced energy $u(x)$ (kT); clipped to the axis")
        ax.set_ylabel(f"{arch}\ndensity")
        ax.legend(fontsize=6)
        mesh = _free_energy_panel(row[1], reference_dihedrals[phi], reference_dihedrals[psi], edges)
        row[1].set_title("MD", fontsize=9)
        for ax, method in zip(row[2:], methods):
            data = per_method.get(method)
            if data is None or not len(data["resampled"]):
                ax.set_axis_off()
                ax.set_title(f"{method}: no finite weight", fontsize=9)
                continue
            mesh = _free_energy_panel(ax, data["resampled"][phi], data["resampled"][psi], edges)
            ax.set_title(f"{data['label']} (reweighted)", fontsize=9)
        for ax in row[1:]:
            ax.set_xlabel(r"$\phi$ (deg)")
        row[1].set_ylabel(r"$\psi$ (deg)")
    if mesh is not None:
        fig.colorbar(mesh, ax=axes[:, 1:].ravel().tolist(), label=r"$-\log p$ (kT)", shrink=0.8)
    fig.suptitle(title)
    save_figure(fig, paths)


ABLATION_AXES = {
    "lambda_reg": "regulariser weight (0 at the left edge)",
    "n_pairs": "regression pairs",
    "teacher_steps": "training steps of the CNF teacher",
}


def ablation_figure(table: pd.DataFrame, paths: Sequence[str | os.PathLike], title: str) -> None:
    """E-W1 and T-W2 of RegFlow flows against the regulariser weight, the number of regression
    pairs and the training steps of the CNF teacher (the RegFlow paper's Fig. 3), one column per
    kind present: a point per seed and a line through the means. ``table`` has ``kind``, ``value``,
    ``e_w1`` and ``t_w2``; rows of kind ``main`` (the main RegFlow flows, with ``main_<kind>``
    columns) are drawn as stars at their own value of each axis. A weight of 0 is drawn at the
    left edge of the log axis."""
    kinds = [k for k in ABLATION_AXES if (table["kind"] == k).any()]
    if not kinds:
        raise ValueError("no ablation rows to plot")
    main = table[table["kind"] == "main"]
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.6 * len(kinds), 6.0), squeeze=False, layout="constrained")
    for col, kind in enumerate(kinds):
        rows = table[table["kind"] == kind]
        x = rows["value"].to_numpy(dtype=float)
        main_x = pd.to_numeric(main.get(f"main_{kind}", pd.Series(dtype=float)), errors="coerce").to_numpy(dtype=float)
        left_edge = None
        if kind == "lambda_reg" and (x > 0).any():
            left_edge = x[x > 0].min() / 10
            x = np.where(x > 0, x, left_edge)  # 0 at the left edge
            main_x = np.where(main_x > 0, main_x, left_edge)
        for row, (metric, label) in enumerate((("e_w1", "E-W1 (kT)"), ("t_w2", "T-W2"))):
            ax = axes[row, col]
            y = rows[metric].to_numpy(dtype=float)
            ax.plot(x, y, "o", color="tab:blue", alpha=0.6, label="one seed")
            means = pd.Series(y).groupby(x).mean()
            ax.plot(means.index, means.to_numpy(), "-", color="tab:blue", label="mean over seeds")
            shown = np.isfinite(main_x)
            if shown.any():
                ax.plot(main_x[shown], main[metric].to_numpy(dtype=float)[shown], "*", color="tab:red",
                        markersize=11, label="main RegFlow flow")
            ax.set_xscale("log")
            if metric == "e_w1":
                ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.set_xlabel(ABLATION_AXES[kind])
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    save_figure(fig, paths)


def fep_figure(estimates: pd.DataFrame, work: np.ndarray, paths: Sequence[str | os.PathLike], title: str) -> None:
    """Free-energy estimates with their intervals (left; the RegFlow paper's Fig. 4) and the
    distribution of the TFEP works (right). ``estimates`` has ``estimator``, ``dF``, ``low``,
    ``high``; the MD row (first) is drawn as a band."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ys = np.arange(len(estimates))[::-1]
    md = estimates.iloc[0]
    left.axvspan(md["low"], md["high"], color="0.85", zorder=0)
    left.axvline(md["dF"], color="0.4", lw=1, zorder=0)
    finite = np.isfinite(estimates["dF"].to_numpy(dtype=float))
    for y, (_, row), ok in zip(ys, estimates.iterrows(), finite):
        if not ok:
            left.text(md["dF"], y, "no estimate (no weight in a state)", va="center", ha="center", fontsize=7)
            continue
        low, high = row["low"], row["high"]
        err = [[max(row["dF"] - low, 0.0)], [max(high - row["dF"], 0.0)]] if np.isfinite(low) and np.isfinite(
            high) else None
        left.errorbar(row["dF"], y, xerr=err, fmt="o", color="black" if y == ys[0] else "tab:blue", capsize=3)
    left.set_yticks(ys)
    left.set_yticklabels(estimates["estimator"], fontsize=8)
    left.set_xlabel(r"$\Delta F = F_B - F_A$ (kT), 95 % bootstrap interval")
    w = np.asarray(work, dtype=np.float64)
    w = w[np.isfinite(w)]
    if len(w):
        right.hist(w, bins=60, density=True, color="tab:blue", alpha=0.6)
        right.axvline(md["dF"], color="0.4", lw=1, label="MD $\\Delta F$")
        right.legend(fontsize=7)
    right.set_xlabel("TFEP work $W(x)$ (kT), finite values")
    right.set_ylabel("density")
    fig.suptitle(title)
    save_figure(fig, paths)


def teacher_budget_figure(table: pd.DataFrame, paths: Sequence[str | os.PathLike], title: str) -> None:
    """ESS, E-W1 and T-W2 of CNF teachers against their training time, one line per prior pairing
    (mean over seeds, each seed a point). ``table`` has ``pairing``, ``steps``, ``train_s``,
    ``ess``, ``e_w1`` and ``t_w2`` (the rows of :func:`boltzflow.bench.bench_teacher`)."""
    if table.empty:
        raise ValueError("no teacher rows to plot")
    metrics = (("ess", "ESS (higher is better)"), ("e_w1", "E-W1 (kT)"), ("t_w2", "T-W2"))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    for pairing, rows in table.groupby("pairing", sort=False):
        mean = rows.groupby("steps")[["train_s", *(m for m, _ in metrics)]].mean().sort_index()
        for ax, (metric, label) in zip(axes, metrics):
            line, = ax.plot(mean["train_s"], mean[metric], "o-", label=pairing)
            ax.plot(rows["train_s"], rows[metric], ".", color=line.get_color(), alpha=0.5)
            for steps, point in mean.iterrows():
                ax.annotate(f"{steps}", (point["train_s"], point[metric]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow log range labels its minor ticks
            ax.set_xlabel("training time (s); labels: steps")
            ax.set_ylabel(label)
    axes[0].legend(title="prior pairing", fontsize=8)
    fig.suptitle(title)
    save_figure(fig, paths)
