"""Shared fixtures (built peptide systems, once per session; the local SLURM cluster) and how the
suite is shared between pytest-xdist workers.

The README's ``pytest`` runs the files on parallel workers (``-n``, see ``pyproject.toml``). Each
file goes to one worker whole, so that its module fixtures (the smoke run, for one) run once, and
the two SLURM files share a worker and so one cluster. Files are handed out longest first, so
that the run does not end waiting on a long file that started last.
"""

import os
import sys
from pathlib import Path

import pytest

# The files that take longest on a 2-core machine (see the durations at the end of a run), in the
# order they are handed out; every other file follows in collection order (test_architecture.py
# checks that each listed file exists).
LONGEST_FIRST = (
    "test_smoke.py",  # the smoke run and what is done with it
    "test_smoke_benchmarks.py",  # the benchmark targets on the smoke MD data
    "test_slurm_workflow.py",  # mostly waiting on SLURM: overlaps well with a busy worker
    "test_workflow.py",
    "test_md_engines.py",
    "test_sgds.py",
    "test_training.py",
    "test_forcefield.py",
)
SLURM_FILES = ("test_slurm_cluster.py", "test_slurm_workflow.py")

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # Each worker gets its share of the cores for torch and OpenMP (set before torch is imported).
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))

sys.path.insert(0, str(Path(__file__).resolve().parent))

from slurm_cluster import local_slurm  # noqa: E402,F401  (a session fixture)


@pytest.fixture(scope="session")
def al2():
    from boltzflow.systems import build_peptide, get_spec

    return build_peptide(get_spec("al2"))


@pytest.fixture(scope="session")
def al4():
    from boltzflow.systems import build_peptide, get_spec

    return build_peptide(get_spec("al4"))


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker more than the cores this process may use. The SLURM files and the
    snakemake runs spend much of their time waiting on other processes (the scheduler, job start
    up), and the extra worker fills those gaps (``pyproject.toml`` caps the count at 4)."""
    return len(os.sched_getaffinity(0)) + 1


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Group the tests by file (the SLURM files together) and put the longest files first."""
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order
    for item in items:
        group = "slurm" if item.path.name in SLURM_FILES else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))
