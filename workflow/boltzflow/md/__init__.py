"""Equilibrium data of peptides by molecular dynamics.

Two engines produce the same sample sets: OpenMM, one Langevin trajectory per job
(:mod:`~boltzflow.md.openmm`), and the batched torch engine (:mod:`~boltzflow.md.torch_engine`,
configured by :mod:`~boltzflow.md.settings`), which runs many replicas as parallel-tempering
ladders (:mod:`~boltzflow.md.tempering`). :mod:`~boltzflow.md.splits` cuts trajectories into
train, validation and test blocks, and :mod:`~boltzflow.md.convergence` reports whether the data
have converged.
"""

from boltzflow.md.convergence import (  # noqa: F401
    BLOCK_TAUS,
    MAX_BLOCKS,
    PHI_POSITIVE,
    ROW_STATES,
    STATES,
    align_inputs,
    bootstrap_population,
    conformational_states,
    convergence_curves,
    convergence_report,
    halves_agreement,
    phi_positive,
    populations_vs_time,
    residues,
    state_populations,
)
from boltzflow.md.openmm import (
    MDSettings,
    available_platforms,
    choose_platform,
    gather_replicas,
    ladder_split,
    log,
    make_context,
    measure_ns_per_day,
    reduced_energies,
    replica_seed,
    run_replica,
    torch_md_settings,
)
from boltzflow.md.splits import (  # noqa: F401
    SPLITS,
    block_split,
    split_frames,
    split_frames_and_energies,
)
from boltzflow.md.settings import TorchMDSettings, geometric_ladder
from boltzflow.md.tempering import CHECKPOINT_NAME, log_default, run_parallel_tempering
from boltzflow.md.torch_engine import (
    BatchedLangevin,
    EnergyAndForces,
    measure_throughput,
    repartition_hydrogen_mass,
    system_masses,
)

__all__ = [
    "log",
    "MDSettings",
    "replica_seed",
    "available_platforms",
    "make_context",
    "measure_ns_per_day",
    "choose_platform",
    "reduced_energies",
    "run_replica",
    "gather_replicas",
    "ladder_split",
    "torch_md_settings",
    "log_default",
    "EnergyAndForces",
    "CHECKPOINT_NAME",
    "geometric_ladder",
    "repartition_hydrogen_mass",
    "system_masses",
    "BatchedLangevin",
    "TorchMDSettings",
    "measure_throughput",
    "run_parallel_tempering",
    "SPLITS",
    "block_split",
    "split_frames",
    "split_frames_and_energies",
    "STATES",
    "PHI_POSITIVE",
    "ROW_STATES",
    "BLOCK_TAUS",
    "MAX_BLOCKS",
    "residues",
    "conformational_states",
    "phi_positive",
    "bootstrap_population",
    "state_populations",
    "halves_agreement",
    "populations_vs_time",
    "align_inputs",
    "convergence_report",
    "convergence_curves",
]
