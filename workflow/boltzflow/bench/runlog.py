"""Where a Snakemake run's time went: job start and finish times read from its log
(``.snakemake/log/<date>.snakemake.log``), as job-minutes per rule (``python -m
boltzflow.bench.runlog LOG`` prints the table, the wall time and the cores' utilisation)."""

from __future__ import annotations

import argparse
import re
from datetime import datetime
from pathlib import Path
from typing import Sequence

import pandas as pd

__all__ = ["job_times", "rule_summary", "run_summary", "main"]

_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\]$")
_START = re.compile(r"^(?:Job (\d+):|(?:local)?rule (\w+):)")
_JOBID = re.compile(r"^\s+jobid: (\d+)$")
_FINISH = re.compile(r"^Finished jobid: (\d+) \(Rule: (\w+)\)")


def _parse_stamp(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def job_times(log_text: str) -> pd.DataFrame:
    """One row per finished job of a Snakemake log: ``jobid``, ``rule``, ``start``, ``end``
    (datetimes, one-second resolution) and ``seconds``.

    A job's start is a ``[timestamp]`` line followed by ``Job <id>: ...`` (or by ``rule <name>:``
    and a ``jobid: <id>`` line, for a rule without a message), its end a ``[timestamp]`` line
    followed by ``Finished jobid: <id> (Rule: <name>)``; every other line is ignored. Jobs
    started but not finished (a run that was stopped or failed) are left out; a log with no
    finished job raises ``ValueError``."""
    starts: dict[int, datetime] = {}
    rows = []
    stamp: datetime | None = None
    pending_rule_start = False  # a "rule <name>:" header waits for its "jobid:" line
    for line in log_text.splitlines():
        found = _STAMP.match(line.strip())
        if found:
            stamp = _parse_stamp(found.group(1))
            pending_rule_start = False
            continue
        if stamp is None:
            continue
        finished = _FINISH.match(line)
        if finished:
            jobid = int(finished.group(1))
            if jobid in starts:
                rows.append({"jobid": jobid, "rule": finished.group(2), "start": starts.pop(jobid), "end": stamp})
            continue
        started = _START.match(line)
        if started:
            if started.group(1) is not None:
                starts[int(started.group(1))] = stamp
            else:
                pending_rule_start = True
            continue
        jobid = _JOBID.match(line)
        if jobid and pending_rule_start:
            starts[int(jobid.group(1))] = stamp
            pending_rule_start = False
    if not rows:
        raise ValueError("no finished job in the log (is it a Snakemake log of a run that executed jobs?)")
    table = pd.DataFrame(rows).sort_values("start", kind="stable").reset_index(drop=True)
    table["seconds"] = (table.end - table.start).dt.total_seconds()
    return table


def rule_summary(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: ``jobs``, ``job_minutes`` (summed over its jobs), and ``first_start_min`` /
    ``last_end_min``, minutes since the run's first job started; sorted by job-minutes."""
    t0 = jobs.start.min()
    grouped = jobs.groupby("rule")
    table = pd.DataFrame({
        "jobs": grouped.size(),
        "job_minutes": grouped.seconds.sum() / 60.0,
        "first_start_min": (grouped.start.min() - t0).dt.total_seconds() / 60.0,
        "last_end_min": (grouped.end.max() - t0).dt.total_seconds() / 60.0,
    })
    return table.sort_values("job_minutes", ascending=False).reset_index()


def run_summary(jobs: pd.DataFrame, cores: int) -> dict[str, float]:
    """Wall minutes from the first start to the last finish, total job-minutes and the cores'
    utilisation (job-minutes / (wall x cores))."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    wall = (jobs.end.max() - jobs.start.min()).total_seconds() / 60.0
    busy = float(jobs.seconds.sum()) / 60.0
    return {"wall_minutes": wall, "job_minutes": busy, "jobs": len(jobs),
            "utilisation": busy / (wall * cores) if wall > 0 else float("nan")}


def _markdown(summary: pd.DataFrame, totals: dict[str, float], cores: int, source: str) -> str:
    lines = [f"# Where the run's time went ({source})", "",
             f"{totals['jobs']} finished jobs, {totals['wall_minutes']:.1f} min from the first start to the "
             f"last finish, {totals['job_minutes']:.1f} job-minutes: {100 * totals['utilisation']:.0f} % "
             f"of {cores} core(s).", "",
             "| rule | jobs | job-minutes | first start (min) | last finish (min) |", "|---|---|---|---|---|"]
    for row in summary.itertuples():
        lines.append(f"| {row.rule} | {row.jobs} | {row.job_minutes:.1f} | {row.first_start_min:.1f} | "
                     f"{row.last_end_min:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boltzflow.bench.runlog", description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="a Snakemake log (.snakemake/log/*.snakemake.log or the console output)")
    parser.add_argument("--cores", type=int, default=2, help="cores the run was given (for the utilisation; default 2)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    if not args.log.is_file():
        parser.error(f"{args.log}: no such file")
    try:
        jobs = job_times(args.log.read_text(errors="replace"))
    except ValueError as error:
        parser.error(f"{args.log}: {error}")
    text = _markdown(rule_summary(jobs), run_summary(jobs, args.cores), args.cores, args.log.name)
    print(text, end="")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
