"""The quality floor a RegFlow teacher must pass before students learn from its pairs.

A student trained by regression onto a teacher's pairs is at best as good as the teacher (the
RegFlow paper's Proposition 2), so a teacher that samples the target badly only wastes the
student runs. :func:`check_teacher_quality` compares the teacher's scored sample set (the metrics
row of ``score_samples``) with configured limits and refuses, naming every number that failed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

__all__ = ["QUALITY_FLOOR_KEYS", "TeacherQualityError", "check_teacher_quality", "read_teacher_metrics"]

#: floor key -> (metric column, "min" or "max")
QUALITY_FLOOR_KEYS = {
    "min_ess": ("ess", "min"),
    "max_e_w1": ("e_w1", "max"),
    "max_t_w2": ("t_w2", "max"),
}


class TeacherQualityError(ValueError):
    """A teacher failed its quality floor (the message names each failing number)."""


def read_teacher_metrics(path: str | Path) -> dict[str, Any]:
    """The one metrics row of a scored teacher (``metrics/<system>/cnf-seed<k>.parquet``)."""
    try:
        table = pd.read_parquet(path)
    except Exception as err:
        raise TeacherQualityError(f"{path}: not a readable metrics table ({err})") from err
    if len(table) != 1:
        raise TeacherQualityError(f"{path}: a teacher's metrics table needs exactly one row, got {len(table)}")
    return table.iloc[0].to_dict()


def check_teacher_quality(metrics: Mapping[str, Any], floor: Mapping[str, Any], source: str,
                          setting: str = "couplings.cnf.quality_floor") -> list[str]:
    """Raise :class:`TeacherQualityError` if ``metrics`` break any limit of ``floor`` (keys of
    :data:`QUALITY_FLOOR_KEYS`; ``None`` = not checked). A missing or NaN metric fails its limit.
    Returns the checks that passed, as text for the log."""
    unknown = sorted(set(floor) - set(QUALITY_FLOOR_KEYS))
    if unknown:
        raise ValueError(f"unknown {setting} key(s) {', '.join(unknown)}; known: {', '.join(QUALITY_FLOOR_KEYS)}")
    failed, passed = [], []
    for key, limit in floor.items():
        if limit is None:
            continue
        column, kind = QUALITY_FLOOR_KEYS[key]
        value = metrics.get(column)
        value = float("nan") if value is None else float(value)
        ok = math.isfinite(value) and (value >= limit if kind == "min" else value <= limit)
        text = f"{column} {value:.4g} {'>=' if kind == 'min' else '<='} {key} {limit:g}"
        if ok:
            passed.append(text)
        else:
            failed.append(f"{column} {value:.4g} {'<' if kind == 'min' else '>'} {setting}.{key} = {limit:g}")
    if failed:
        raise TeacherQualityError(
            f"{source}: the teacher fails its quality floor: {'; '.join(failed)}. Its students would be no better "
            f"(a regression student is bounded by its teacher), so no pairs are made from it: train the teacher "
            f"longer or on more data, or change {setting}.")
    return passed
