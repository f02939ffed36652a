"""Figures of the MD stage: Ramachandran free-energy maps, energy histograms and basin populations
against simulated time."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from boltzflow.evaluation import ROW_STATES
from boltzflow.plots.common import save_figure

__all__ = ["ramachandran", "energy_histogram", "populations_vs_time"]


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

    ``curves`` is the table of :func:`boltzflow.md.convergence.populations_vs_time` (columns
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
