"""bench."""

from boltzflow.bench.flows import (  # noqa: F401
    SAMPLING_ENGINES,
    TRAINING_ENGINES,
    bench_flows,
)
from boltzflow.bench.md import (  # noqa: F401
    bench_energy,
    bench_md,
    energy_markdown,
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
