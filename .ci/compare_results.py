#!/usr/bin/env python
"""Compare two results folders table by table: every Parquet file under ``tables/`` and
``metrics/`` (and, with ``--all``, every Parquet file) must hold the same values.

Used to show that a refactor changes no number: run the same config on two commits, then
``python .ci/compare_results.py results_before/default results_after/default``. Columns that measure
wall-clock time or throughput differ from run to run and are left out; so is the schema metadata
(provenance: git commit, config hash, versions). Exit status 1 when anything differs.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

# time and speed columns: measured, never reproducible
VOLATILE = re.compile(r"(^|_)(s|time|wall|seconds|secs?|elapsed|per_s|per_second|ns_per_day|throughput|"
                      r"timestamp|date|host|machine|pid)($|_)", re.IGNORECASE)


def _same(a: pd.Series, b: pd.Series) -> bool:
    if a.dtype == object or b.dtype == object:
        return all(_cell_same(x, y) for x, y in zip(a, b))
    x, y = a.to_numpy(), b.to_numpy()
    return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc"))


def _cell_same(x, y) -> bool:
    if isinstance(x, (np.ndarray, list)) or isinstance(y, (np.ndarray, list)):
        return np.array_equal(np.asarray(x), np.asarray(y), equal_nan=np.asarray(x).dtype.kind == "f")
    if isinstance(x, float) and isinstance(y, float) and np.isnan(x) and np.isnan(y):
        return True
    return x == y


def compare(before: Path, after: Path, everything: bool) -> list[str]:
    pattern = "**/*.parquet"
    files = sorted(p.relative_to(before) for p in before.glob(pattern)
                   if everything or p.relative_to(before).parts[0] in ("tables", "metrics"))
    problems = []
    for rel in files:
        other = after / rel
        if not other.exists():
            problems.append(f"{rel}: missing in {after}")
            continue
        a, b = pd.read_parquet(before / rel), pd.read_parquet(other)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            problems.append(f"{rel}: shape/columns differ {a.shape} {list(a.columns)} vs {b.shape} {list(b.columns)}")
            continue
        bad = [c for c in a.columns if not VOLATILE.search(str(c)) and not _same(a[c], b[c])]
        if bad:
            problems.append(f"{rel}: columns differ: {bad}")
    extra = sorted(p.relative_to(after) for p in after.glob(pattern)
                   if (everything or p.relative_to(after).parts[0] in ("tables", "metrics"))
                   and not (before / p.relative_to(after)).exists())
    problems += [f"{rel}: only in {after}" for rel in extra]
    print(f"compared {len(files)} Parquet files; {len(problems)} differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--all", action="store_true", help="every Parquet file, not only tables/ and metrics/")
    args = parser.parse_args(argv)
    problems = compare(args.before, args.after, args.all)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
