"""SGDS: search-guided diffusion samplers (Kim et al., NeurIPS 2025, arXiv 2505.19552).

- :mod:`boltzflow.sgds.learner`: the diffusion sampler, trajectory balance, ELBO and EUBO;
- :mod:`boltzflow.sgds.buffer`: the rank-prioritised replay buffer of Searcher samples;
- :mod:`boltzflow.sgds.rnd`: random network distillation, the Searcher's novelty bonus.

The Searchers (MALA, AIS, MD) and the training rounds are not built yet.
"""

from .buffer import RankedReplayBuffer
from .learner import DiffusionSampler, DriftMLP, Trajectories, elbo_eubo, log_weights, trajectory_balance_loss
from .rnd import RandomNetworkDistillation

__all__ = ["DiffusionSampler", "DriftMLP", "Trajectories", "elbo_eubo", "log_weights", "trajectory_balance_loss",
           "RankedReplayBuffer", "RandomNetworkDistillation"]
