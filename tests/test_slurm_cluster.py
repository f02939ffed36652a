"""Checks of the local SLURM test cluster (tests/slurm_cluster.py).

The cluster tests are skipped when SLURM or munge is missing (or we are not
root), and fail instead when BOLTZFLOW_REQUIRE_SLURM=1 is set, as in CI.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import slurm_cluster
from slurm_cluster import (
    SNAKEMAKE_SLURM_FLAGS,
    LocalSlurm,
    local_slurm,  # noqa: F401  (the fixture, see conftest.py)
)


def _job_logs(workdir: Path, lines: int = 40) -> str:
    """Tails of the per-job SLURM logs snakemake's executor keeps on failure."""
    parts = []
    for log in sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")):
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        parts.append(f"----- {log} -----\n{tail}")
    return "\n".join(parts) or "(no SLURM job logs)"


def _wait_for_text(path: Path, expected: str, timeout: float) -> str:
    """Poll until ``path`` holds ``expected`` (stripped) or time runs out."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        if path.exists():
            text = path.read_text()
            if text.strip() == expected:
                return text
        time.sleep(0.2)
    return text


def test_require_slurm_or_skip_skips_or_fails(monkeypatch):
    """Without SLURM the helper skips, unless BOLTZFLOW_REQUIRE_SLURM=1."""
    monkeypatch.setattr(slurm_cluster, "slurm_installed", lambda: "no slurm here")

    monkeypatch.delenv(slurm_cluster.REQUIRE_ENV_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no slurm here"):
        slurm_cluster.require_slurm_or_skip()

    monkeypatch.setenv(slurm_cluster.REQUIRE_ENV_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match="no slurm here"):
        slurm_cluster.require_slurm_or_skip()

    monkeypatch.setattr(slurm_cluster, "slurm_installed", lambda: None)
    slurm_cluster.require_slurm_or_skip()  # neither skips nor fails


@pytest.mark.slurm
def test_sbatch_wrap_runs_a_job(local_slurm: LocalSlurm, tmp_path: Path):
    out = tmp_path / "out.txt"
    submitted = local_slurm.run(
        [
            "sbatch",
            "--parsable",
            f"--output={tmp_path / 'job-%j.log'}",
            "--wrap",
            f"echo hello > {out}",
        ]
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    assert job_id.isdigit(), submitted.stdout

    text = _wait_for_text(out, "hello", timeout=60)
    assert text == "hello\n", (
        f"job {job_id} did not write {out} (got {text!r}).\n"
        f"{local_slurm.run(['squeue', '--states=all']).stdout}\n"
        f"{local_slurm.logs_tail()}"
    )


@pytest.mark.slurm
def test_snakemake_runs_through_slurm_executor(local_slurm: LocalSlurm, tmp_path: Path):
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            """\
            rule all:
                input:
                    expand("out/{name}.txt", name=["a", "b"]),
                resources:
                    mem_mb=100,
                    runtime=5,


            rule write:
                output:
                    "out/{name}.txt",
                resources:
                    mem_mb=100,
                    runtime=5,
                shell:
                    "echo ok > {output}"
            """
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        *SNAKEMAKE_SLURM_FLAGS,
        "--jobs",
        "2",
        "--latency-wait",
        "10",
    ]
    started = time.monotonic()
    result = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=local_slurm.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"snakemake failed after {elapsed:.0f} s: {' '.join(cmd)}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}\n"
        f"{_job_logs(tmp_path)}\n{local_slurm.logs_tail()}"
    )
    for name in ("a", "b"):
        assert (tmp_path / "out" / f"{name}.txt").read_text() == "ok\n"
    # The jobs really went through SLURM, not a local fallback.
    assert "SLURM run ID" in result.stderr, result.stderr
