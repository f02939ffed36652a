"""Replay buffer of Searcher samples with rank-based prioritised sampling.

Items are points ``x`` with their log-reward ``log R(x) = -E(x)`` (stored, so a backward
trajectory from a buffer point costs no energy call). Sampling is with replacement, item of
reward rank ``r`` (0 = highest reward) drawn with probability proportional to
``1 / (k N + r)`` (Tripp et al. 2020; ``k = rank_weight``, ``N`` the number of items): high
rewards are favoured, but every item keeps a chance. When full, the lowest-reward items are
dropped first.
"""

from __future__ import annotations

import torch

__all__ = ["RankedReplayBuffer"]


class RankedReplayBuffer:
    """The Searcher's and Learner's samples with their log-rewards, drawn with rank-based priority.

    The point of rank ``k`` (0 = highest log-reward) among ``n`` is drawn with probability
    proportional to ``1 / (rank_weight * n + k)`` (rank-based prioritisation, as in the SGDS
    paper); past ``capacity`` the lowest-reward points are dropped.

    >>> import torch
    >>> buffer = RankedReplayBuffer(capacity=100, dim=2)
    >>> buffer.add(torch.randn(10, 2), torch.arange(10.0))
    10
    >>> int(buffer.probabilities().argmax())  # the highest reward is drawn most often
    9
    """

    def __init__(self, capacity: int, dim: int, rank_weight: float = 1e-2):
        if capacity < 1 or dim < 1 or not rank_weight > 0:
            raise ValueError(f"need capacity >= 1, dim >= 1 and rank_weight > 0, got {capacity}, {dim}, {rank_weight}")
        self.capacity, self.dim, self.rank_weight = int(capacity), int(dim), float(rank_weight)
        self.x = torch.empty(0, dim, dtype=torch.float32)
        self.log_reward = torch.empty(0, dtype=torch.float64)
        self._probabilities: torch.Tensor | None = None  # cached until the contents change

    def __len__(self) -> int:
        return len(self.x)

    def add(self, x: torch.Tensor, log_reward: torch.Tensor) -> int:
        """Add points ``(B, d)`` and their log-rewards ``(B,)``; rows with a non-finite point or
        log-reward are left out. Returns the number of rows added."""
        if x.ndim != 2 or x.shape[1] != self.dim or log_reward.shape != (len(x),):
            raise ValueError(f"expected x (B, {self.dim}) and log_reward (B,), got {tuple(x.shape)} and "
                             f"{tuple(log_reward.shape)}")
        x = x.detach().to("cpu", torch.float32)
        log_reward = log_reward.detach().to("cpu", torch.float64)
        ok = torch.isfinite(x).all(1) & torch.isfinite(log_reward)
        self.x = torch.cat([self.x, x[ok]])
        self.log_reward = torch.cat([self.log_reward, log_reward[ok]])
        if len(self.x) > self.capacity:
            keep = torch.argsort(self.log_reward, descending=True, stable=True)[: self.capacity]
            keep = keep.sort().values  # keep insertion order among the survivors
            self.x, self.log_reward = self.x[keep], self.log_reward[keep]
        self._probabilities = None
        return int(ok.sum())

    def probabilities(self) -> torch.Tensor:
        """The sampling probability of every item ``(N,)``, float64."""
        n = len(self)
        if n == 0:
            raise ValueError("the replay buffer is empty")
        if self._probabilities is not None:
            return self._probabilities
        ranks = torch.empty(n, dtype=torch.float64)
        ranks[torch.argsort(self.log_reward, descending=True, stable=True)] = torch.arange(n, dtype=torch.float64)
        weights = 1.0 / (self.rank_weight * n + ranks)
        self._probabilities = weights / weights.sum()
        return self._probabilities

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` items drawn with replacement: points ``(n, d)`` and their log-rewards ``(n,)``."""
        idx = torch.multinomial(self.probabilities(), n, replacement=True, generator=generator)
        return self.x[idx], self.log_reward[idx]

    def state_dict(self) -> dict:
        return {"x": self.x, "log_reward": self.log_reward, "capacity": self.capacity, "rank_weight": self.rank_weight}

    def load_state_dict(self, state: dict) -> None:
        x, log_reward = state["x"], state["log_reward"]
        if x.ndim != 2 or x.shape[1] != self.dim or log_reward.shape != (len(x),):
            raise ValueError(f"buffer state of shape {tuple(x.shape)} does not fit a buffer of dimension {self.dim}")
        self.x, self.log_reward = x.to(torch.float32), log_reward.to(torch.float64)
        self._probabilities = None
