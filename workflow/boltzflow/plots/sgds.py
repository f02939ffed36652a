"""Figures of the SGDS stage (Kim et al., NeurIPS 2025): the EUBO - ELBO gap against energy calls,
samples beside exact samples, and energy and distance histograms of particle targets. The rule
scripts draw or read the reference samples and compute energies; these functions only draw."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from boltzflow.evaluation import PAPER_SGDS_GAP, SGDS_METHOD_NAMES
from boltzflow.plots.common import note_figure, save_figure

__all__ = ["sgds_gap_figure", "sgds_samples_figure", "sgds_particle_figure"]


_SGDS_COLOURS = {"sgds": "tab:blue", "tb": "tab:red", "tb_buffer": "tab:green", "tb_ls": "tab:orange",
                 "pis": "tab:purple"}


def sgds_gap_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame]], paths: Sequence[str | os.PathLike]) -> None:
    """EUBO - ELBO against the energy calls spent during training (the SGDS paper's Fig. 2), one
    panel per target, with the paper's final SGDS point where it reports one; ``runs`` holds
    ``(target, method, seed, history)`` (histories need the monitor's ``gap`` column)."""
    with_gap = [r for r in runs if "gap" in r[3] and len(r[3])]
    targets = list(dict.fromkeys(r[0] for r in with_gap))
    if not targets:
        note_figure("no training history with the gap (sgds.evaluation.monitor_samples = 0)", paths)
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


def sgds_samples_figure(runs: Sequence[tuple[str, str, int, pd.DataFrame]], exact: Mapping[str, np.ndarray],
                        paths: Sequence[str | os.PathLike], max_points: int = 2000) -> None:
    """Samples of each sampler in the plane of the first two coordinates beside exact samples of
    the target (the SGDS paper's Fig. 1), one row per target; ``runs`` holds ``(target, method,
    seed, samples)``, ``exact`` the exact samples ``(n, dim)`` of each target that has an exact
    sampler. Runs on other targets (particles, peptides) are left to :func:`sgds_particle_figure`."""
    runs = [r for r in runs if r[0] in exact]
    targets = list(dict.fromkeys(r[0] for r in runs))
    if not targets:
        note_figure("no SGDS run on a target with an exact sampler in this config", paths)
        return
    n_cols = 1 + max(sum(r[0] == t for r in runs) for t in targets)
    fig, axes = plt.subplots(len(targets), n_cols, figsize=(2.8 * n_cols, 2.8 * len(targets)), squeeze=False,
                             layout="constrained", sharex="row", sharey="row")
    for i, name in enumerate(targets):
        ref = np.asarray(exact[name])
        axes[i, 0].scatter(ref[:max_points, 0], ref[:max_points, 1], s=1, c="k", alpha=0.4, linewidths=0)
        axes[i, 0].set_title(f"{name}: exact", fontsize=9)
        rows = [r for r in runs if r[0] == name]
        for j, (_, method, seed, samples) in enumerate(rows, start=1):
            x = samples.to_numpy()[:max_points]
            axes[i, j].scatter(ref[:max_points, 0], ref[:max_points, 1], s=1, c="0.8", linewidths=0)
            axes[i, j].scatter(x[:, 0], x[:, 1], s=1, c=_SGDS_COLOURS.get(method, "k"), alpha=0.6, linewidths=0)
            axes[i, j].set_title(f"{SGDS_METHOD_NAMES.get(method, method)} (seed {seed})", fontsize=9)
        for ax in axes[i, len(rows) + 1:]:
            ax.axis("off")
    fig.suptitle("Samples, first two coordinates (grey: exact samples)", fontsize=10)
    save_figure(fig, paths)


def sgds_particle_figure(runs: Sequence[tuple[str, str, int, np.ndarray, np.ndarray]],
                         references: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         paths: Sequence[str | os.PathLike], bins: int = 60) -> None:
    """Energy and interatomic-distance histograms of each sampler beside the reference samples
    (the SGDS paper's Fig. 3), one row per particle target; ``runs`` holds ``(target, method, seed,
    energies, distances)`` of each sampler's samples, ``references`` the ``(energies, distances)``
    of each target's reference samples (distances of all pairs, pooled). The bins span the
    reference's range widened by a fifth; the legend gives the share of a sampler's energies
    outside it (collapsed clusters have huge energies)."""
    targets = [t for t in dict.fromkeys(r[0] for r in runs) if t in references]
    if not targets:
        note_figure("no particle target in this config", paths)
        return
    fig, axes = plt.subplots(len(targets), 2, figsize=(9.0, 3.0 * len(targets)), squeeze=False, layout="constrained")
    for i, name in enumerate(targets):
        ref_u, ref_d = references[name]
        ranges = []
        for values in (ref_u, ref_d):
            lo, hi = np.quantile(values[np.isfinite(values)], [0.001, 0.999])
            ranges.append((lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo)))
        for ax, values, span in zip(axes[i], (ref_u, ref_d), ranges):
            ax.hist(values, bins=bins, range=span, density=True, color="0.8", label="reference")
        for _, method, seed, u, d in (r for r in runs if r[0] == name):
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
