"""SGDS: search-guided diffusion samplers (Kim et al., NeurIPS 2025, arXiv 2505.19552).

- :mod:`boltzflow.sgds.learner`: the diffusion sampler (uniform or random time grids), trajectory
  balance, PIS and path-MLE losses, ELBO and EUBO;
- :mod:`boltzflow.sgds.egnn`: the E(n)-equivariant drift for particle systems and peptides;
- :mod:`boltzflow.sgds.buffer`: the rank-prioritised replay buffer of Searcher samples;
- :mod:`boltzflow.sgds.rnd`: random network distillation, the Searcher's novelty bonus;
- :mod:`boltzflow.sgds.settings`: a run's settings from the config, checked without torch;
- :mod:`boltzflow.sgds.train`: the rounds (MALA, AIS or MD Searcher, TB Learner, re-initialisation)
  and the baselines (on-policy TB, TB with a Searcher buffer, PIS), with every energy call counted;
- :mod:`boltzflow.sgds.run`: one run of the workflow (rules ``train_sgds``, ``evaluate_sgds``) and
  its command line.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "buffer": ["RankedReplayBuffer"],
    "learner": [
        "DiffusionSampler", "DriftMLP", "Trajectories", "build_sampler", "elbo_eubo", "elbo_monitor", "evaluate_sampler",
        "load_sampler", "log_weights", "path_mle_loss", "pis_loss", "save_sampler", "time_grid",
        "trajectory_balance_loss",
    ],
    "rnd": ["RandomNetworkDistillation"],
    "settings": [
        "SGDS_METHODS", "SGDSSettings", "check_sgds_section", "check_sgds_target", "resolve_sgds_run",
        "sgds_target_names",
    ],
    "train": ["EnergyCounter", "evaluation_grid", "reinitialise", "run_searcher", "train_sgds"],
})
