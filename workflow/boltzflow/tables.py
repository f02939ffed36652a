"""The papers' tables from per-model metric rows: methods x metrics, with uncertainty over seeds.

A metric row (rule ``score_samples``) holds one trained model's numbers; :func:`flow_table`
groups the rows by (architecture, method), summarises every metric over the seeds with
:func:`boltzflow.evaluation.seed_summary` (mean and a 95 % percentile-bootstrap interval of the
mean), and flags a group when any of its models failed the invertibility check.
:func:`markdown_flow_table` lays it out like the RegFlow paper's tables.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd

from boltzflow.evaluation import seed_summary

__all__ = ["flow_table", "markdown_flow_table", "TABLE_METRICS"]

#: (column, heading, better) of the summarised metrics
TABLE_METRICS = (("ess", "ESS", "higher"), ("e_w1", "E-W1", "lower"), ("e_w2", "E-W2", "lower"),
                 ("t_w2", "T-W2", "lower"), ("e_w1_raw", "E-W1 raw", "lower"),
                 ("mirrored_rate", "mirrored", "-"), ("train_s", "train s", "lower"),
                 ("sampling_s_per_200k", "sample 200k s", "lower"))


def flow_table(rows: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """One row per (system, architecture, method): ``<metric>_mean``, ``_low``, ``_high`` for every
    metric of :data:`TABLE_METRICS` present, ``seeds``, and ``invertibility_flagged``."""
    data = pd.concat(list(rows), ignore_index=True)
    if data.empty:
        raise ValueError("no metric rows")
    out = []
    for (system, arch, method), group in data.groupby(["system", "architecture", "method"], sort=True):
        row = {"system": system, "architecture": arch, "method": method, "seeds": len(group),
               "invertibility_flagged": bool(group["invertibility_flagged"].any())}
        for column, _, _ in TABLE_METRICS:
            if column not in group:
                continue
            values = group[column].to_numpy(dtype=np.float64)
            finite = values[np.isfinite(values)]
            if len(finite) < len(values):  # an infinite distance (no finite-weight sample) stays visible
                row.update({f"{column}_mean": float(np.mean(values)), f"{column}_low": float(np.min(values)),
                            f"{column}_high": float(np.max(values))})
                continue
            summary = seed_summary(finite)
            row.update({f"{column}_mean": summary["mean"], f"{column}_low": summary["low"],
                        f"{column}_high": summary["high"]})
        out.append(row)
    return pd.DataFrame(out)


def _cell(row: pd.Series, column: str) -> str:
    mean = row.get(f"{column}_mean")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    digits = 4 if abs(mean) < 1 else 3
    text = f"{mean:.{digits}g}"
    if row["seeds"] > 1:
        text += f" [{row[f'{column}_low']:.{digits}g}, {row[f'{column}_high']:.{digits}g}]"
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
