"""Random network distillation (Burda et al. 2019): a novelty score for the SGDS Searcher.

A fixed, randomly initialised target network ``f`` and a predictor ``f_hat`` trained to match it
on the points seen so far; ``novelty(x) = |f(x) - f_hat(x)|^2`` is large where the predictor has
not been trained, i.e. away from visited regions. From round 2 on the Searcher samples the
novelty-augmented energy ``E(x) - alpha * novelty(x)``.
"""

from __future__ import annotations

import torch
from torch import nn

from boltzflow.sgds.egnn import EGNNInvariantFeatures

__all__ = ["RandomNetworkDistillation"]


def _mlp(dim: int, hidden: int, depth: int, out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = dim
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out))


class RandomNetworkDistillation(nn.Module):
    """MLPs on the flattened coordinates (``depth`` hidden layers each), or with ``particles = (n,
    s)`` EGNN feature networks (:class:`~boltzflow.sgds.egnn.EGNNInvariantFeatures`; the paper's
    choice for LJ and peptides: a target of 2 layers, a predictor of 3), whose novelty does not
    change under rotations, translations and permutations of identical particles.

    >>> import torch
    >>> rnd = RandomNetworkDistillation(dim=2, hidden=32)
    >>> x = torch.randn(64, 2)
    >>> before = rnd.novelty(x).mean().item()
    >>> for _ in range(200):
    ...     _ = rnd.update(x)
    >>> rnd.novelty(x).mean().item() < before  # seen points become less novel
    True
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 2, out: int | None = None, lr: float = 1e-3,
                 particles: tuple[int, int] | None = None, node_types: tuple[int, ...] | None = None):
        super().__init__()
        if particles is None:
            out = out or dim
            self.target = _mlp(dim, hidden, depth, out)
            self.predictor = _mlp(dim, hidden, depth, out)
        else:

            if particles[0] * particles[1] != dim:
                raise ValueError(f"particles (n, s) must have n * s = dim = {dim}, got {particles}")
            self.target = EGNNInvariantFeatures(*particles, hidden=hidden, layers=2, out=out, node_types=node_types)
            self.predictor = EGNNInvariantFeatures(*particles, hidden=hidden, layers=3, out=out, node_types=node_types)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.predictor.parameters(), lr=lr)

    def novelty(self, x: torch.Tensor) -> torch.Tensor:
        """``|f(x) - f_hat(x)|^2`` per row ``(B,)``, differentiable in ``x`` (for MALA)."""
        x = x.to(next(self.predictor.parameters()).dtype)
        return (self.predictor(x) - self.target(x)).square().sum(-1)

    def update(self, x: torch.Tensor) -> float:
        """One step of the predictor on the points ``x``; returns the loss before the step."""
        loss = self.novelty(x.detach()).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())
