"""Reading a Snakemake log into job times (boltzflow.bench.runlog)."""

from __future__ import annotations

import pytest
from boltzflow.bench.runlog import job_times, main, rule_summary, run_summary

# The shapes Snakemake 9 writes: "Job <id>: <message>" for rules with a message, a "rule <name>:"
# block with "jobid:" for rules without one, "Finished jobid: <id> (Rule: <name>)", and a job
# that never finishes (a stopped run). Job output lines in between must be ignored.
LOG = """\
Building DAG of jobs...
Job stats:
job      count
Select jobs to execute...

[Sun Dec  6 15:35:04 2026]
Job 3: Building the al2 system
Reason: Missing output files: a
[Sun Dec  6 15:35:04 2026]
Job 52: Training a diffusion sampler
2026-12-06 15:35:05,255 boltzflow INFO: rule build_system, wildcards {'system': 'al2'}
[Sun Dec  6 15:35:05 2026]
Finished jobid: 3 (Rule: build_system)
1 of 5 steps (20%) done

[Sun Dec  6 15:35:05 2026]
localrule all_plots:
    input: x
    jobid: 7
    reason: Missing output files
[Sun Dec  6 15:36:43 2026]
Finished jobid: 52 (Rule: train_sgds)
[Sun Dec  6 15:37:05 2026]
Finished jobid: 7 (Rule: all_plots)
[Sun Dec  6 15:37:06 2026]
Job 9: MD job 0 of al2
[Sun Dec  6 15:38:06 2026]
Job 10: MD job 1 of al2
[Sun Dec  6 15:40:06 2026]
Finished jobid: 10 (Rule: md_torch)
"""


def test_job_times_reads_every_finished_job_and_leaves_out_unfinished_ones():
    jobs = job_times(LOG)
    assert list(jobs.jobid) == [3, 52, 7, 10]
    assert list(jobs.rule) == ["build_system", "train_sgds", "all_plots", "md_torch"]
    assert list(jobs.seconds) == [1.0, 99.0, 120.0, 120.0]  # job 9 never finished


def test_rule_summary_and_run_summary_add_up():
    jobs = job_times(LOG)
    summary = rule_summary(jobs).set_index("rule")
    assert summary.loc["md_torch", "job_minutes"] == pytest.approx(2.0)
    assert summary.loc["train_sgds", "first_start_min"] == 0.0
    assert summary.loc["md_torch", "last_end_min"] == pytest.approx(5 + 2 / 60)
    assert summary.job_minutes.is_monotonic_decreasing and set(summary.index[:2]) == {"all_plots", "md_torch"}
    totals = run_summary(jobs, cores=2)
    assert totals["wall_minutes"] == pytest.approx(5 + 2 / 60)
    assert totals["job_minutes"] == pytest.approx(340 / 60)
    assert totals["utilisation"] == pytest.approx((340 / 60) / (2 * (5 + 2 / 60)))
    with pytest.raises(ValueError, match="cores"):
        run_summary(jobs, cores=0)


def test_a_log_without_finished_jobs_is_refused():
    with pytest.raises(ValueError, match="no finished job"):
        job_times("Building DAG of jobs...\nNothing to be done.\n")


def test_command_line_writes_the_table_and_names_a_bad_file(tmp_path, capsys):
    log = tmp_path / "run.snakemake.log"
    log.write_text(LOG)
    out = tmp_path / "where" / "time.md"
    assert main([str(log), "--cores", "2", "--markdown", str(out)]) == 0
    text = out.read_text()
    assert "| md_torch | 1 | 2.0 | 3.0 | 5.0 |" in text and "4 finished jobs" in text
    assert text == capsys.readouterr().out
    empty = tmp_path / "empty.log"
    empty.write_text("Nothing to be done.\n")
    with pytest.raises(SystemExit):
        main([str(empty)])
    assert "empty.log: no finished job" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.log")])
    assert "no such file" in capsys.readouterr().err
