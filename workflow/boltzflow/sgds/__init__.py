"""SGDS: search-guided diffusion samplers (Kim et al., NeurIPS 2025, arXiv 2505.19552).

- :mod:`boltzflow.sgds.learner`: the diffusion sampler (uniform or random time grids), trajectory
  balance, PIS and path-MLE losses, ELBO and EUBO;
- :mod:`boltzflow.sgds.egnn`: the E(n)-equivariant drift for particle systems and peptides;
- :mod:`boltzflow.sgds.buffer`: the rank-prioritised replay buffer of Searcher samples;
- :mod:`boltzflow.sgds.rnd`: random network distillation, the Searcher's novelty bonus;
- :mod:`boltzflow.sgds.train`: the rounds (MALA, AIS or MD Searcher, TB Learner, re-initialisation)
  and the baselines (on-policy TB, TB with a Searcher buffer, PIS), with every energy call counted;
- :mod:`boltzflow.sgds.run`: one run of the workflow (rules ``train_sgds``, ``evaluate_sgds``) and
  its command line.
"""

from .buffer import RankedReplayBuffer
from .learner import (
                      DiffusionSampler,
                      DriftMLP,
                      Trajectories,
                      build_sampler,
                      elbo_eubo,
                      evaluate_sampler,
                      load_sampler,
                      log_weights,
                      path_mle_loss,
                      pis_loss,
                      save_sampler,
                      time_grid,
                      trajectory_balance_loss,
)
from .rnd import RandomNetworkDistillation
from .train import SGDS_METHODS, EnergyCounter, SGDSSettings, reinitialise, run_searcher, train_sgds

__all__ = ["DiffusionSampler", "DriftMLP", "Trajectories", "elbo_eubo", "evaluate_sampler", "log_weights",
           "trajectory_balance_loss", "pis_loss", "path_mle_loss", "time_grid", "build_sampler", "load_sampler", "save_sampler",
           "RankedReplayBuffer", "RandomNetworkDistillation", "SGDS_METHODS", "EnergyCounter", "SGDSSettings",
           "reinitialise", "run_searcher", "train_sgds"]
