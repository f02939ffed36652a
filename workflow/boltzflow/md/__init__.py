"""Equilibrium data of peptides by molecular dynamics.

Two engines produce the same sample sets: OpenMM, one Langevin trajectory per job
(:mod:`~boltzflow.md.openmm`), and the batched torch engine (:mod:`~boltzflow.md.torch_engine`,
configured by :mod:`~boltzflow.md.settings`), which runs many replicas as parallel-tempering
ladders (:mod:`~boltzflow.md.tempering`). :mod:`~boltzflow.md.splits` cuts trajectories into
train, validation and test blocks, and :mod:`~boltzflow.md.convergence` reports whether the data
have converged.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "convergence": [
        "BLOCK_TAUS", "MAX_BLOCKS", "align_inputs", "bootstrap_population", "convergence_curves",
        "convergence_report", "halves_agreement", "populations_vs_time", "state_populations",
    ],
    "openmm": [
        "MDSettings", "available_platforms", "choose_platform", "gather_replicas", "log",
        "make_context", "measure_ns_per_day", "reduced_energies", "run_replica",
    ],
    "splits": ["SPLITS", "block_split", "split_frames", "split_frames_and_energies"],
    "settings": ["TorchMDSettings", "geometric_ladder", "ladder_split", "replica_seed", "torch_md_settings"],
    "tempering": ["CHECKPOINT_NAME", "log_default", "run_parallel_tempering"],
    "torch_engine": [
        "BatchedLangevin", "EnergyAndForces", "measure_throughput", "repartition_hydrogen_mass",
        "system_masses",
    ],
})
