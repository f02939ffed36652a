"""Side-by-side benchmarks of the workflow's engines, reported as ratios measured in one run.

:mod:`~boltzflow.bench.energy` times energy and force evaluations of the torch force field
against OpenMM, :mod:`~boltzflow.bench.md` races the MD engines (plain OpenMM, the MD stage,
the torch engine) to a statistical precision, :mod:`~boltzflow.bench.flows` times flow
training and sampling engines, :mod:`~boltzflow.bench.frames` compares the flows' coordinate
frames as Boltzmann generators, :mod:`~boltzflow.bench.ot_floor` measures the regression floor
of batch-OT pairs against the batch size, :mod:`~boltzflow.bench.reflow` the error and speed
of the ODE solvers that make reflow pairs, and :mod:`~boltzflow.bench.teacher` the CNF teacher's
quality against its training steps and prior pairing.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "energy": ["bench_energy", "energy_markdown"],
    "flows": ["SAMPLING_ENGINES", "TRAINING_ENGINES", "bench_flows"],
    "frames": ["bench_frames"],
    "md": [
        "bench_md", "markdown_rows", "markdown_table", "plain_dynamics_correlation", "precision_race",
        "torch_engine_ns_per_day", "write_markdown_report",
    ],
    "ot_floor": ["bench_ot_floor"],
    "reflow": ["bench_reflow", "solver_label"],
    "teacher": ["bench_teacher"],
})
