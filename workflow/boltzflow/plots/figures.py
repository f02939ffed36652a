"""Figures. Each function draws one figure and saves it in every requested format."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from boltzflow.evaluation import PAPER_SGDS_GAP, SGDS_METHOD_NAMES  # noqa: E402
from boltzflow.io import atomic_path  # noqa: E402
from boltzflow.md import ROW_STATES  # noqa: E402
from boltzflow.sgds.run import needs_reference_file
from boltzflow.targets import load_target

__all__ = ["ablation_figure", "ebm_densities_figure", "ebm_mode_weights_figure", "energy_histogram", "fep_figure", "flow_samples_figure", "populations_vs_time", "ramachandran", "save_figure", "sgds_gap_figure", "sgds_samples_figure"]


def save_figure(fig: plt.Figure, paths: Sequence[str | os.PathLike]) -> None:
    """Save ``fig`` to each path (format from the suffix), atomically, then close it."""
    for path in paths:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=150, bbox_inches="tight")
    plt.close(fig)


def ramachandran(
    dihedrals: pd.DataFrame, paths: Sequence[str | os.PathLike], title: str, bins: int = 90
) -> None:
    """2-D histograms of -log density over (phi, psi) in degrees, one panel per residue."""
    pairs = [
        (c, "psi" + c[3:]) for c in dihedrals.columns if c.startswith("phi_") and "psi" + c[3:] in dihedrals
    ]
    if not pairs:
        raise ValueError("no matching phi/psi columns to plot")
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), squeeze=False)
    edges = np.linspace(-180.0, 180.0, bins + 1)
    for ax, (phi, psi) in zip(axes[0], pairs):
        hist, _, _ = np.histogram2d(
            np.degrees(dihedrals[phi]), np.degrees(dihedrals[psi]), bins=[edges, edges], density=True
        )
        with np.errstate(divide="ignore"):
            free = -np.log(hist)
        free -= np.nanmin(free[np.isfinite(free)])
        mesh = ax.pcolormesh(edges, edges, np.where(np.isfinite(free), free, np.nan).T, cmap="viridis", shading="flat")
        ax.set_xlabel(r"$\phi$ (deg)")
        ax.set_ylabel(r"$\psi$ (deg)")
        ax.set_title(phi[4:])
        ax.set_xticks(range(-180, 181, 90))
        ax.set_yticks(range(-180, 181, 90))
        ax.set_aspect("equal")
        fig.colorbar(mesh, ax=ax, label=r"$-\log p$ (kT)")
    fig.suptitle(f"{title} ({len(dihedrals):,} frames)")
    save_figure(fig, paths)


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


def ablation_figure(table: pd.DataFrame, paths: Sequence[str | os.PathLike], title: str) -> None:
    """E-W1 and T-W2 of RegFlow flows against the regulariser weight (left) and the number of
    regression pairs (right), one point per seed (the RegFlow paper's Fig. 3). ``table`` has
    ``kind`` (``lambda_reg`` or ``n_pairs``), ``value``, ``e_w1`` and ``t_w2``; a weight of 0 is
    drawn at the left edge of the log axis."""
    kinds = [k for k in ("lambda_reg", "n_pairs") if (table["kind"] == k).any()]
    if not kinds:
        raise ValueError("no ablation rows to plot")
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.6 * len(kinds), 6.0), squeeze=False, layout="constrained")
    for col, kind in enumerate(kinds):
        rows = table[table["kind"] == kind].sort_values("value")
        x = rows["value"].to_numpy(dtype=float)
        if kind == "lambda_reg" and (x > 0).any():
            x = np.where(x > 0, x, x[x > 0].min() / 10)  # 0 at the left edge
        for row, (metric, label) in enumerate((("e_w1", "E-W1 (kT)"), ("t_w2", "T-W2"))):
            ax = axes[row, col]
            ax.plot(x, rows[metric], "o-", color="tab:blue")
            ax.set_xscale("log")
            if metric == "e_w1":
                ax.set_yscale("log")
            ax.set_ylabel(label)
            ax.set_xlabel("regulariser weight (0 at the left edge)" if kind == "lambda_reg"
                          else "regression pairs")
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


def energy_histogram(
    energy: np.ndarray, paths: Sequence[str | os.PathLike], title: str, bins: int = 80,
    groups: np.ndarray | None = None,
) -> None:
    """Histogram of reduced energies (kT), overlaid per group (e.g. replica) when given."""
    energy = np.asarray(energy, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    edges = np.histogram_bin_edges(energy, bins=bins)
    ax.hist(energy, bins=edges, density=True, color="0.3", alpha=0.45, label="all")
    if groups is not None and len(np.unique(groups)) > 1:
        for g in np.unique(groups):
            ax.hist(energy[groups == g], bins=edges, density=True, histtype="step", label=f"replica {g}")
    ax.set_xlabel("reduced energy $u(x)$ (kT)")
    ax.set_ylabel("density")
    ax.set_title(f"{title}: mean {energy.mean():.1f} kT, std {energy.std():.1f} kT")
    ax.legend(fontsize=7)
    save_figure(fig, paths)


_STATE_STYLE = {
    "alpha_R": {"color": "tab:blue"},
    "beta": {"color": "tab:orange"},
    "alpha_L": {"color": "tab:green"},
    "C7ax": {"color": "tab:red"},
    "phi>0": {"color": "black", "linestyle": "--"},
}


def populations_vs_time(curves: pd.DataFrame, paths: Sequence[str | os.PathLike], title: str) -> None:
    """Basin populations against aggregate simulated time, one panel per residue.

    ``curves`` is the table of :func:`boltzflow.convergence.populations_vs_time` (columns
    ``residue``, ``state``, ``time_ns``, ``population``, ``ci_low``, ``ci_high``, ``n_frames``).
    Each state is a line with markers at the checkpoints and a shaded confidence band. The y axis
    is logarithmic so that the rare ``phi>0`` basins stay readable; values below a floor of half a
    frame at the last checkpoint (rounded down to a power of ten) -- including populations of 0
    -- are drawn at the floor.
    """
    needed = {"residue", "state", "time_ns", "population", "ci_low", "ci_high", "n_frames"}
    missing = sorted(needed - set(curves.columns))
    if missing:
        raise ValueError(f"curves table is missing column(s) {missing}")
    if curves.empty:
        raise ValueError("curves table is empty: nothing to plot")
    res_names = list(dict.fromkeys(curves["residue"]))
    floor = 10.0 ** math.floor(math.log10(0.5 / max(int(curves["n_frames"].max()), 1)))
    fig, axes = plt.subplots(1, len(res_names), figsize=(4.6 * len(res_names), 3.8), squeeze=False,
                             sharey=True)
    for ax, res in zip(axes[0], res_names):
        sub = curves[curves["residue"] == res]
        states = [s for s in ROW_STATES if s in set(sub["state"])]
        states += [s for s in dict.fromkeys(sub["state"]) if s not in states]
        for state in states:
            rows = sub[sub["state"] == state].sort_values("time_ns")
            t = rows["time_ns"].to_numpy(np.float64)
            style = _STATE_STYLE.get(state, {})
            ax.plot(t, np.clip(rows["population"].to_numpy(np.float64), floor, None), marker="o",
                    markersize=3, label=state, **style)
            ax.fill_between(t, np.clip(rows["ci_low"].to_numpy(np.float64), floor, None),
                            np.clip(rows["ci_high"].to_numpy(np.float64), floor, None),
                            color=style.get("color"), alpha=0.18, linewidth=0)
        ax.set_yscale("log")
        ax.set_ylim(floor * 0.8, 1.5)
        ax.set_xlabel("aggregate simulated time (ns)")
        ax.set_title(res)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel(f"population (values < {floor:g} at floor)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    save_figure(fig, paths)


_EBM_COLOURS = {"flowmc": "tab:blue", "ula": "tab:orange"}
_EBM_NAMES = {"flowmc": "flowMC-EBM", "ula": "ULA-EBM"}


def _note_figure(text: str, paths: Sequence[str | os.PathLike]) -> None:
    """A figure holding only a note, for an output whose data this run does not have."""
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    save_figure(fig, paths)


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
        _note_figure("no dataset with known modes in this run", paths)
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
        _note_figure("no 2-D dataset in this run", paths)
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


_SGDS_COLOURS = {"sgds": "tab:blue", "tb": "tab:red", "tb_buffer": "tab:green", "tb_ls": "tab:orange",
                 "pis": "tab:purple"}


def sgds_gap_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame]], paths: Sequence[str | os.PathLike]) -> None:
    """EUBO - ELBO against the energy calls spent during training (the SGDS paper's Fig. 2), one
    panel per target, with the paper's final SGDS point where it reports one; ``runs`` holds
    ``(target, method, seed, history)`` (histories need the monitor's ``gap`` column)."""
    with_gap = [r for r in runs if "gap" in r[3] and len(r[3])]
    targets = list(dict.fromkeys(r[0] for r in with_gap))
    if not targets:
        _note_figure("no training history with the gap (sgds.evaluation.monitor_samples = 0)", paths)
        return
    fig, axes = plt.subplots(1, len(targets), figsize=(4.0 * len(targets), 3.2), squeeze=False, layout="constrained")
    for ax, target in zip(axes[0], targets):
        for _, method, seed, history in (r for r in with_gap if r[0] == target):
            ax.plot(history["energy_calls"], history["gap"], color=_SGDS_COLOURS.get(method, "k"), lw=1.2,
                    label=f"{SGDS_METHOD_NAMES.get(method, method)} (seed {seed})")
        if target in PAPER_SGDS_GAP:
            calls, gap = PAPER_SGDS_GAP[target]
            ax.plot([calls], [gap], marker="*", ms=11, ls="none", color=_SGDS_COLOURS["sgds"], mec="k",
                    label="SGDS, paper (end of training)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("energy calls")
        ax.set_ylabel("EUBO - ELBO")
        ax.set_title(target, fontsize=10)
        ax.legend(fontsize=7)
    save_figure(fig, paths)


def sgds_samples_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame]], paths: Sequence[str | os.PathLike],
                        n_reference: int = 2000, max_points: int = 2000) -> None:
    """Samples of each sampler in the plane of the first two coordinates beside exact samples of
    the target (the SGDS paper's Fig. 1), one row per target; ``runs`` holds ``(target, method,
    seed, samples)``; particle targets (no exact sampler) are left to :func:`sgds_particle_figure`."""
    import torch


    runs = [r for r in runs if not needs_reference_file(r[0])]
    targets = list(dict.fromkeys(r[0] for r in runs))
    if not targets:
        _note_figure("no SGDS run on a target with an exact sampler in this config", paths)
        return
    n_cols = 1 + max(sum(r[0] == t for r in runs) for t in targets)
    fig, axes = plt.subplots(len(targets), n_cols, figsize=(2.8 * n_cols, 2.8 * len(targets)), squeeze=False,
                             layout="constrained", sharex="row", sharey="row")
    for i, name in enumerate(targets):
        exact = load_target(name).sample(n_reference, generator=torch.Generator().manual_seed(0)).numpy()
        axes[i, 0].scatter(exact[:max_points, 0], exact[:max_points, 1], s=1, c="k", alpha=0.4, linewidths=0)
        axes[i, 0].set_title(f"{name}: exact", fontsize=9)
        rows = [r for r in runs if r[0] == name]
        for j, (_, method, seed, samples) in enumerate(rows, start=1):
            x = samples.to_numpy()[:max_points]
            axes[i, j].scatter(exact[:max_points, 0], exact[:max_points, 1], s=1, c="0.8", linewidths=0)
            axes[i, j].scatter(x[:, 0], x[:, 1], s=1, c=_SGDS_COLOURS.get(method, "k"), alpha=0.6, linewidths=0)
            axes[i, j].set_title(f"{SGDS_METHOD_NAMES.get(method, method)} (seed {seed})", fontsize=9)
        for ax in axes[i, len(rows) + 1:]:
            ax.axis("off")
    fig.suptitle("Samples, first two coordinates (grey: exact samples)", fontsize=10)
    save_figure(fig, paths)


def sgds_particle_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame]], references: dict[str, np.ndarray],
                         paths: Sequence[str | os.PathLike], bins: int = 60) -> None:
    """Energy and interatomic-distance histograms of each sampler beside the reference samples
    (the SGDS paper's Fig. 3), one row per particle target; ``runs`` holds ``(target, method, seed,
    samples)``, ``references`` the reference configurations of each target. The bins span the
    reference's range widened by a fifth; the legend gives the share of a sampler's energies
    outside it (collapsed clusters have huge energies)."""
    import torch


    targets = [t for t in dict.fromkeys(r[0] for r in runs) if t in references]
    if not targets:
        _note_figure("no particle target in this config", paths)
        return
    fig, axes = plt.subplots(len(targets), 2, figsize=(9.0, 3.0 * len(targets)), squeeze=False, layout="constrained")
    for i, name in enumerate(targets):
        target = load_target(name)

        def energy_and_distances(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with torch.no_grad():
                xt = torch.as_tensor(x, dtype=torch.float64)
                return target.energy(xt).numpy(), target.squared_distances(xt).sqrt().reshape(-1).numpy()

        ref_u, ref_d = energy_and_distances(references[name])
        ranges = []
        for values in (ref_u, ref_d):
            lo, hi = np.quantile(values[np.isfinite(values)], [0.001, 0.999])
            ranges.append((lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo)))
        for ax, values, span in zip(axes[i], (ref_u, ref_d), ranges):
            ax.hist(values, bins=bins, range=span, density=True, color="0.8", label="reference")
        for _, method, seed, samples in (r for r in runs if r[0] == name):
            u, d = energy_and_distances(samples.to_numpy())
            outside = float(np.mean(~((u >= ranges[0][0]) & (u <= ranges[0][1]))))
            colour = _SGDS_COLOURS.get(method, "k")
            label = f"{SGDS_METHOD_NAMES.get(method, method)} (seed {seed})"
            for ax, values, span, text in ((axes[i, 0], u, ranges[0], f"{label}, {100 * outside:.0f} % outside"),
                                           (axes[i, 1], d, ranges[1], label)):
                # normalised by all samples, so the area shown is the share inside the range
                width = (span[1] - span[0]) / bins
                ax.hist(values, bins=bins, range=span, weights=np.full(len(values), 1.0 / (len(values) * width)),
                        histtype="step", lw=1.3, color=colour, label=text)
        axes[i, 0].set_xlabel(f"{name}: energy (reduced units)")
        axes[i, 1].set_xlabel(f"{name}: interatomic distance")
        for ax in axes[i]:
            ax.set_ylabel("density")
            ax.legend(fontsize=7)
    save_figure(fig, paths)
