"""Shared fixtures: built peptide systems (built once per session) and the local SLURM cluster."""

import sys
from pathlib import Path

import pytest

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
