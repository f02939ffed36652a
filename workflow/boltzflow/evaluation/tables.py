"""The papers' tables from per-model metric rows: methods x metrics, with uncertainty over seeds.

A metric row (rule ``score_samples``) holds one trained model's numbers; :func:`flow_table`
groups the rows by (architecture, method), summarises every metric over the seeds with
:func:`boltzflow.evaluation.seed_summary` (mean and a 95 % percentile-bootstrap interval of the
mean), and flags a group when any of its models failed the invertibility check.
:func:`markdown_flow_table` lays it out like the RegFlow paper's tables.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from boltzflow.evaluation.statistics import seed_summary

__all__ = ["flow_table", "markdown_flow_table", "TABLE_METRICS", "EBM_METRICS", "ebm_table", "markdown_ebm_summary",
           "markdown_ebm_mode_weights", "markdown_ebm_rhat", "SGDS_METRICS", "sgds_table", "markdown_sgds_table",
           "SHOOTOUT_METRICS", "SHOOTOUT_METHOD_NAMES", "shootout_method_name", "shootout_table",
           "markdown_shootout_table"]

#: (column, heading, better) of the summarised metrics
TABLE_METRICS = (("ess", "ESS", "higher"), ("e_w1", "E-W1", "lower"), ("e_w2", "E-W2", "lower"),
                 ("t_w2", "T-W2", "lower"), ("e_w1_raw", "E-W1 raw", "lower"),
                 ("test_log_q", "test log q", "higher"), ("invalid_rate", "invalid", "lower"),
                 ("mirrored_rate", "mirrored", "-"), ("train_s", "train s", "lower"),
                 ("sampling_s_per_200k", "sample 200k s", "lower"))


def _seed_columns(group: pd.DataFrame, columns: Sequence[str]) -> dict[str, float]:
    """``<column>_mean``, ``_low``, ``_high`` over the seeds in ``group`` (a 95 % bootstrap interval
    of the mean); a column with a non-finite value gives its plain mean, min and max, so that an
    infinite distance (no finite-weight sample) stays visible; absent or all-null columns are left out."""
    out: dict[str, float] = {}
    for column in columns:
        if column not in group or group[column].isna().all():
            continue
        values = group[column].to_numpy(dtype=np.float64)
        if np.isfinite(values).all():
            summary = seed_summary(values)
        else:
            summary = {"mean": float(np.mean(values)), "low": float(np.min(values)), "high": float(np.max(values))}
        out.update({f"{column}_mean": summary["mean"], f"{column}_low": summary["low"],
                    f"{column}_high": summary["high"]})
    return out


def flow_table(rows: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One row per (system, architecture, method): ``<metric>_mean``, ``_low``, ``_high`` for every
    metric of :data:`TABLE_METRICS` present, ``seeds``, and ``invertibility_flagged``."""
    data = pd.concat(list(rows), ignore_index=True)
    if data.empty:
        raise ValueError("no metric rows")
    if {"n_invalid", "n_drawn"} <= set(data):  # proposals that are no configuration (weight 0)
        data["invalid_rate"] = data["n_invalid"] / data["n_drawn"]
    out = []
    for (system, arch, method), group in data.groupby(["system", "architecture", "method"], sort=True):
        row = {"system": system, "architecture": arch, "method": method, "seeds": len(group),
               "invertibility_flagged": bool(group["invertibility_flagged"].any())}
        row.update(_seed_columns(group, [c for c, _, _ in TABLE_METRICS]))
        out.append(row)
    return pd.DataFrame(out)


#: columns shown with fixed decimals (a log-likelihood of ~200 nats needs its hundredths)
FIXED_DECIMALS = {"test_log_q": 2}


def _cell(row: pd.Series, column: str, digits: int | None = None) -> str:
    """``mean [low, high]`` (the interval only with several seeds); ``-`` when missing; 4
    significant digits below 1 and 3 above unless ``digits`` is given, fixed decimals for the
    columns of :data:`FIXED_DECIMALS`."""
    mean = row.get(f"{column}_mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    if column in FIXED_DECIMALS:
        spec = f".{FIXED_DECIMALS[column]}f"
    else:
        spec = f".{digits or (4 if abs(mean) < 1 else 3)}g"
    text = f"{mean:{spec}}"
    if row["seeds"] > 1:
        text += f" [{row[f'{column}_low']:{spec}}, {row[f'{column}_high']:{spec}}]"
    return text


def markdown_flow_table(table: pd.DataFrame, *, system: str, tolerance: float) -> str:
    """The table as Markdown, with a note on what the numbers are."""
    columns = [c for c, _, _ in TABLE_METRICS if f"{c}_mean" in table]
    headings = {c: h for c, h, _ in TABLE_METRICS}
    lines = [f"# {system}: flows, RegFlow vs MLE{' (and the CNF teacher)' if (table['method'] == 'cnf').any() else ''}",
             "",
             "Mean over seeds with a 95 % bootstrap interval of the mean in brackets (when there is more than "
             "one seed). ESS: Kish, normalised, over all proposals; E-W1 / E-W2 / T-W2: after SNIS "
             "resampling, against the MD test split; `E-W1 raw`: the proposals without reweighting; "
             "test log q: mean log-density (nats) of MD test frames, higher is a smaller forward KL; "
             "invalid: fraction of proposals that are no configuration (beyond a torsion cut), weight 0; "
             "mirrored: fraction of proposals with the wrong chirality (mirrored before the metrics). "
             f"A `!` marks a model whose float32 inverse error exceeds {tolerance:g} (its log q is not "
             "trustworthy).", "",
             "| architecture | method | seeds | " + " | ".join(headings[c] for c in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        flag = " !" if row["invertibility_flagged"] else ""
        lines.append(f"| {row['architecture']} | {row['method']}{flag} | {row['seeds']} | "
                     + " | ".join(_cell(row, c) for c in columns) + " |")
    return "\n".join(lines) + "\n"


# ---- flowMC-EBM ----

#: (column, heading) of the EBM summary, in order
EBM_METRICS = (("mse_ebm", "mode-weight MSE, EBM vs truth"),
               ("mse_ebm_late_median", "same, median over the last 20 % of training"),
               ("mse_ebm_late_max", "same, max over the last 20 %"), ("mse_init", "MSE init vs EBM"),
               ("mse_negatives", "MSE negatives vs EBM"), ("log_density_sq_error_median", "median sq. log-density error"),
               ("rhat_max", "max R-hat"), ("global_acceptance", "global acc."), ("local_acceptance", "local acc."))

EBM_METHOD_NAMES = {"flowmc": "flowMC-EBM", "ula": "ULA-EBM"}


def _runs_table(rows: Iterable[pd.DataFrame], key: str, metrics: Sequence[str], first: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (``key``, method) of the metric rows: ``dim``, ``seeds``, the ``first`` value of
    each column in ``first``, and ``<metric>_mean``/``_low``/``_high`` over seeds."""
    data = pd.concat(list(rows), ignore_index=True)
    if data.empty:
        raise ValueError("no metric rows")
    if {"n_invalid", "n_drawn"} <= set(data):  # proposals that are no configuration (weight 0)
        data["invalid_rate"] = data["n_invalid"] / data["n_drawn"]
    out = []
    for (name, method), group in data.groupby([key, "method"], sort=True):
        row = {key: name, "method": method, "dim": int(group["dim"].iloc[0]), "seeds": len(group)}
        row.update({column: group[column].iloc[0] for column in first if column in group})
        row.update(_seed_columns(group, metrics))
        out.append(row)
    return pd.DataFrame(out)


def ebm_table(rows: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One row per (dataset, method): ``<metric>_mean``/``_low``/``_high`` over seeds and ``seeds``."""
    return _runs_table(rows, "dataset", [c for c, _ in EBM_METRICS])


def _ebm_cell(row: pd.Series, column: str) -> str:
    return _cell(row, column, digits=3)


def _markdown(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in body]


def markdown_ebm_summary(table: pd.DataFrame) -> str:
    columns = [(c, h) for c, h in EBM_METRICS if f"{c}_mean" in table]
    body = [[r["dataset"], EBM_METHOD_NAMES.get(r["method"], r["method"]), str(r["dim"]), str(r["seeds"])]
            + [_ebm_cell(r, c) for c, _ in columns] for _, r in table.iterrows()]
    lines = ["# EBMs: flowMC-EBM vs ULA-EBM, all metrics", "",
             "Means over seeds (95 % bootstrap interval of the mean when there are several). Mode weights of",
             "the EBM are integrated on a grid in 2-D and taken from MCMC chains otherwise; 'init' is the flow",
             "(flowMC-EBM) or the persistent chains (ULA-EBM); R-hat is the maximum over coordinates of the",
             "rank-normalised split R-hat of chains started from the persistent state.", ""]
    lines += _markdown(["dataset", "method", "d", "seeds"] + [h for _, h in columns], body)
    return "\n".join(lines) + "\n"


def markdown_ebm_mode_weights(table: pd.DataFrame) -> str:
    """The flowMC-EBM paper's Table 3: mode-weight MSEs on the mixture datasets."""
    rows = table[table.get("mse_ebm_mean", pd.Series(dtype=float)).notna()] if "mse_ebm_mean" in table else table.iloc[:0]
    body = [[r["dataset"], EBM_METHOD_NAMES.get(r["method"], r["method"])]
            + [_ebm_cell(r, c) for c in ("mse_init", "mse_negatives", "mse_ebm", "mse_ebm_late_median")]
            for _, r in rows.iterrows()]
    lines = ["# Mode-weight MSE (flowMC-EBM paper, Table 3)", "",
             "init and negatives are compared with the EBM's own mode weights, the EBM with the true weights",
             "(paper, 2-D mixture: flowMC-EBM 5.19e-4 / 3.12e-5 / 4.29e-4, ULA-EBM 1.19e-3 / 1.79e-3 / 1.24e-3).",
             "The last column is the EBM's MSE at every history point of the last 20 % of training (median):",
             "the weights move from batch to batch, so the final model alone can be lucky or unlucky.", ""]
    lines += _markdown(["dataset", "method", "init wrt EBM", "negatives wrt EBM", "EBM wrt truth",
                        "EBM wrt truth, late median"], body) if body \
        else ["(no dataset with known mode weights in this run)"]
    return "\n".join(lines) + "\n"


def markdown_ebm_rhat(table: pd.DataFrame) -> str:
    """The flowMC-EBM paper's Table 2: max R-hat, methods x datasets."""
    datasets = list(dict.fromkeys(table.sort_values("dim")["dataset"]))
    body = []
    for method in sorted(table["method"].unique()):
        cells = []
        for dataset in datasets:
            match = table[(table["method"] == method) & (table["dataset"] == dataset)]
            cells.append(_ebm_cell(match.iloc[0], "rhat_max") if len(match) else "-")
        body.append([EBM_METHOD_NAMES.get(method, method)] + cells)
    lines = ["# Max R-hat over coordinates (flowMC-EBM paper, Table 2)", "",
             "Chains started from the persistent state and run by the method's own sampler (paper, 4-mode",
             "GMM d = 16 / 32 / 64: flowMC-EBM 1.01 / 1.01 / 1.05, ULA-EBM 7.30 / 9.29 / 90.90).", ""]
    lines += _markdown(["method"] + datasets, body)
    return "\n".join(lines) + "\n"


# ---- SGDS ----

#: (column, heading) of the SGDS table, in order
SGDS_METRICS = (("elbo", "ELBO"), ("eubo", "EUBO"), ("gap", "gap"), ("log_z_is_error", "log Z_IS error"),
                ("log_z_learned_error", "log Z_theta error"), ("w2", "W2"), ("energy_w2", "energy W2"),
                ("distance_w1", "distance W1"), ("energy_calls", "energy calls"))

SGDS_METHOD_NAMES = {"sgds": "SGDS", "tb": "TB (on-policy)", "tb_buffer": "TB + Searcher buffer",
                     "tb_ls": "TB + LS", "pis": "PIS"}


def sgds_table(rows: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One row per (target, method): ``<metric>_mean``/``_low``/``_high`` over seeds, ``seeds``, ``log_z_true``."""
    return _runs_table(rows, "target", [c for c, _ in SGDS_METRICS], first=("log_z_true",))


#: The SGDS paper's final (energy calls, EUBO - ELBO gap) of SGDS per target (Tables 1, 2 and 6)
PAPER_SGDS_GAP = {"gmm40": (12e6, 0.73), "manywell32": (20e6, 3.85), "manywell64": (20e6, 16.26),
                  "manywell128": (20e6, 70.35), "lj13": (370e3, 1.53), "lj55": (45e3, 33.01)}

#: Groups of SGDS targets, as the paper's tables split them: (title, member test, columns)
SGDS_GROUPS = (
    ("Manywell (as the paper's Table 1)", lambda t: t.startswith("manywell"),
     ("elbo", "eubo", "gap", "log_z_is_error", "log_z_learned_error", "energy_calls")),
    ("Particle systems (as the paper's Table 2)", lambda t: t in ("lj13", "lj55", "dw4"),
     ("elbo", "eubo", "gap", "w2", "energy_w2", "distance_w1", "energy_calls")),
    ("Peptides, Cartesian coordinates (as the paper's Table 3)", lambda t: t in ("al2", "al3", "al4"),
     ("elbo", "eubo", "gap", "w2", "energy_w2", "energy_calls")),
    ("Low-dimensional targets (as the paper's Table 6)", lambda t: True,
     ("elbo", "eubo", "gap", "log_z_is_error", "log_z_learned_error", "w2", "energy_w2", "energy_calls")),
)


def markdown_sgds_table(table: pd.DataFrame) -> str:
    """Targets x methods, one section per group of targets like the SGDS paper's Tables 1, 2 and 6."""
    headings = dict(SGDS_METRICS)
    lines = ["# Diffusion samplers: SGDS vs baselines", "",
             "Means over seeds (95 % bootstrap interval of the mean when there are several). ELBO from forward",
             "trajectories, EUBO from backward trajectories of reference samples (exact samples; parallel-tempering",
             "samples for lj13, lj55, dw4), so ELBO <= log Z <= EUBO; W2 and energy W2 against the reference;",
             "distance W1: between the pooled interatomic distances; energy calls: all the run spent, Searcher and",
             "Learner. Paper, EUBO - ELBO gap: 40GMM 0.73 with 12 M calls, Manywell-32 3.85 with 20 M, LJ-13 1.53",
             "with 370 K."]
    placed: set[int] = set()
    for title, member, metrics in SGDS_GROUPS:
        rows = [(i, r) for i, r in table.iterrows() if i not in placed and member(str(r["target"]))]
        if not rows:
            continue
        placed.update(i for i, _ in rows)
        columns = [c for c in metrics if f"{c}_mean" in table]
        body = [[r["target"], SGDS_METHOD_NAMES.get(r["method"], r["method"]), str(r["dim"]), str(r["seeds"])]
                + [_cell(r, c, digits=4) for c in columns] for _, r in rows]
        lines += ["", f"## {title}", ""]
        lines += _markdown(["target", "method", "d", "seeds"] + [headings[c] for c in columns], body)
    return "\n".join(lines) + "\n"


#: (column, heading, better) of the cross-method comparison, in order
SHOOTOUT_METRICS = (("energy_calls", "energy calls", "-"), ("w2", "W2", "lower"), ("energy_w1", "energy W1", "lower"),
                    ("t_w2", "T-W2", "lower"), ("distance_w1", "distance W1", "lower"),
                    ("log_z_error", "log Z error", "lower"), ("mode_tv", "mode-weight TV", "lower"),
                    ("modes_found", "modes found", "higher"),
                    ("well_tv", "well-weight error", "lower"), ("ess", "ESS", "higher"), ("wall_s", "wall s", "lower"))

SHOOTOUT_METHOD_NAMES = {"exact": "exact samples (the metrics' floor)", "pt": "parallel tempering (MALA)",
                         "flow_mle": "flow BG (MLE on PT samples, IS)",
                         "flow_regflow": "flow BG (RegFlow on PT samples, IS)",
                         "flowmc": "flow-assisted MCMC (i-SIR + MALA)", **SGDS_METHOD_NAMES}
#: the names that differ on a peptide, whose reference and tempering are molecular dynamics
SHOOTOUT_PEPTIDE_NAMES = {"exact": "MD training frames (the metrics' floor)",
                          "pt": "parallel-tempering MD (torch engine)"}


def shootout_method_name(method: str, kind: str = "density") -> str:
    """The name of a comparison method in tables and figures, on a target of ``kind``
    (``density``, ``particle``, ``peptide``; a peptide's tempering is MD)."""
    if method in SHOOTOUT_PEPTIDE_NAMES and kind == "peptide":
        return SHOOTOUT_PEPTIDE_NAMES[method]
    return SHOOTOUT_METHOD_NAMES.get(method, method)


def shootout_table(rows: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One row per (target, method, budget): ``<metric>_mean``/``_low``/``_high`` over seeds of
    every metric of :data:`SHOOTOUT_METRICS` present, ``seeds``, ``dim`` and the target's
    ``kind`` (``density`` where the rows do not say); sorted by target,
    method (in the order of :data:`SHOOTOUT_METHOD_NAMES`) and budget."""
    data = pd.concat(list(rows), ignore_index=True)
    if data.empty:
        raise ValueError("no shootout rows")
    order = {name: i for i, name in enumerate(SHOOTOUT_METHOD_NAMES)}
    out = []
    for (target, method, budget), group in data.groupby(["target", "method", "budget"], sort=False):
        row = {"target": target, "method": method, "budget": int(budget), "dim": int(group["dim"].iloc[0]),
               "kind": str(group["kind"].iloc[0]) if "kind" in group else "density", "seeds": len(group)}
        row.update(_seed_columns(group, [c for c, _, _ in SHOOTOUT_METRICS]))
        out.append(row)
    table = pd.DataFrame(out)
    table["_order"] = table["method"].map(lambda m: order.get(m, len(order)))
    return table.sort_values(["target", "_order", "budget"], kind="stable").drop(columns="_order").reset_index(drop=True)


def _shootout_cell(row: pd.Series, column: str) -> str:
    if column != "energy_calls" or pd.isna(row.get("energy_calls_mean")):
        return _cell(row, column, digits=3)
    text = f"{row['energy_calls_mean']:,.0f}"  # calls: whole numbers
    if row["seeds"] > 1 and row["energy_calls_low"] != row["energy_calls_high"]:
        text += f" [{row['energy_calls_low']:,.0f}, {row['energy_calls_high']:,.0f}]"
    return text


def markdown_shootout_table(table: pd.DataFrame) -> str:
    """Methods x budgets per target, every metric as ``mean [95 % interval]`` over seeds."""
    lines = ["# One comparison across the methods: error against energy calls", "",
             "Means over seeds with the 95 % bootstrap interval of the mean. Energy calls: every target energy",
             "(with or without its gradient) the method evaluated, training data and evaluation samples included.",
             "W2 (exact OT) and energy W1 against exact reference samples, after SNIS resampling where the method",
             "gives weights; log Z error: the method's own estimate (importance sampling), '-' where it makes none;",
             "mode-weight TV: total variation between the Voronoi-zone weights of the samples and of the",
             "reference; modes found: share of modes holding at least a tenth of their uniform share;",
             "well-weight error (Manywell): mean over the double wells of the error of the left well's weight;",
             "ESS: normalised Kish ESS of the weights. The 'exact samples' row scores exact samples the same way:",
             "the finite-sample floor of each metric. A peptide is scored against the test split of its MD:",
             "energy W1, T-W2 (torus W2 of the backbone dihedrals), mode-weight TV over the backbone states",
             "(alpha_R, beta, alpha_L, C7ax) and states found (populated at a tenth of the reference's share);",
             "its energy calls are force evaluations, and its floor row scores MD training frames. A particle",
             "system (LJ) is scored against its parallel-tempering reference samples: energy W1 and distance W1",
             "(between the pooled interatomic distances), its floor row scoring held-out reference samples."]
    headings = {c: h for c, h, _ in SHOOTOUT_METRICS}
    for target, group in table.groupby("target", sort=False):
        columns = [c for c, _, _ in SHOOTOUT_METRICS if f"{c}_mean" in group and group[f"{c}_mean"].notna().any()]
        body = [[shootout_method_name(r["method"], r.get("kind", "density")), f"{int(r['budget']):,}" if r["budget"] else "-",
                 str(r["seeds"])] + [_shootout_cell(r, c) for c in columns] for _, r in group.iterrows()]
        lines += ["", f"## {target} (d = {int(group['dim'].iloc[0])})", ""]
        lines += _markdown(["method", "budget", "seeds"] + [headings[c] for c in columns], body)
    return "\n".join(lines) + "\n"
