"""Side-by-side benchmarks of the workflow's engines, reported as ratios measured in one run.

:mod:`~boltzflow.bench.energy` times energy and force evaluations of the torch force field
against OpenMM, :mod:`~boltzflow.bench.md` races the MD engines (plain OpenMM, the MD stage,
the torch engine) to a statistical precision, and :mod:`~boltzflow.bench.flows` times flow
training and sampling engines.
"""

from boltzflow.bench.energy import bench_energy, energy_markdown
from boltzflow.bench.flows import (
    SAMPLING_ENGINES,
    TRAINING_ENGINES,
    bench_flows,
)
from boltzflow.bench.md import (
    bench_md,
    markdown_rows,
    markdown_table,
    plain_dynamics_correlation,
    precision_race,
    torch_engine_ns_per_day,
)

__all__ = [
    "torch_engine_ns_per_day",
    "plain_dynamics_correlation",
    "precision_race",
    "bench_md",
    "markdown_rows",
    "markdown_table",
    "bench_energy",
    "energy_markdown",
    "SAMPLING_ENGINES",
    "TRAINING_ENGINES",
    "bench_flows",
]
