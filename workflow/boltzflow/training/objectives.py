"""Training objectives for coupling flows, on the flow's latent coordinates.

**RegFlow** (Rehman et al., 2025, arXiv 2506.01158, Eq. 3 and Algorithm 1) regresses the flow's
generative map onto fixed pairs ``(x0, x1)``, ``x0 ~ N(0, I)``:
``L = E || f(x0) - (x1 + sigma_n eps) ||^2 + lambda_r R`` with ``R = (log|det J_f(x0)|)^2``
("logdet"), ``R = || f^-1(f(x0)) - x0 ||^2`` ("fwdbwd") or no regulariser. **MLE** is the forward
KL on data, ``L = -E log q(x1)``. (The CNF teacher's flow matching is in :mod:`boltzflow.cnf`.)
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["METHODS", "REGULARISERS", "Objective", "regflow_loss", "mle_loss", "heldout_nll"]

METHODS = ("regflow", "mle")
REGULARISERS = ("logdet", "fwdbwd", "none")

#: ``objective(flow, batch, generator) -> (loss, logged terms)``, what :func:`~boltzflow.training.loop.train` minimises.
Objective = Callable[[nn.Module, dict[str, torch.Tensor], torch.Generator], tuple[torch.Tensor, dict[str, float]]]


def regflow_loss(regulariser: str = "logdet", lambda_reg: float = 1e-5, target_noise: float = 0.0) -> Objective:
    """The RegFlow objective on batches ``{"x0": (B, d), "x1": (B, d)}`` (latent coordinates)."""
    if regulariser not in REGULARISERS:
        raise ValueError(f"regulariser must be one of {', '.join(REGULARISERS)}, got {regulariser!r}")
    if lambda_reg < 0 or target_noise < 0:
        raise ValueError("lambda_reg and target_noise must be >= 0")

    def objective(flow, batch, generator):
        x0, x1 = batch["x0"], batch["x1"]
        if target_noise > 0:
            x1 = x1 + target_noise * torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
        y, logdet = flow(x0)
        regression = (y - x1).square().sum(dim=1).mean()
        terms = {"regression": float(regression.detach())}
        loss = regression
        if regulariser == "logdet":
            reg = logdet.square().mean()
        elif regulariser == "fwdbwd":
            back, _ = flow.inverse(y)
            reg = (back - x0).square().sum(dim=1).mean()
        else:
            reg = None
        if reg is not None:
            loss = loss + lambda_reg * reg
            terms[regulariser] = float(reg.detach())
        terms["mean_logdet"] = float(logdet.detach().mean())
        return loss, terms

    return objective


def _latent_log_prob(flow, x1: torch.Tensor) -> torch.Tensor:
    """``log q`` of latent points under a coupling flow: the standard normal at ``f^-1(x1)`` plus
    the inverse's log-determinant."""
    z0, logdet = flow.inverse(x1)
    return -0.5 * (z0.square().sum(dim=1) + z0.shape[1] * math.log(2 * math.pi)) + logdet


@torch.no_grad()
def heldout_nll(flow, x1: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean negative log-likelihood (nats, latent coordinates, as :func:`mle_loss`) of held-out
    points ``x1`` ``(n, d)``, over those with a finite density (a point beyond a torsion cut of the
    internal frame has none, whichever model)."""
    log_q = torch.cat([_latent_log_prob(flow, x1[start:start + batch_size]).double()
                       for start in range(0, len(x1), batch_size)])
    finite = torch.isfinite(log_q)
    return float(-log_q[finite].mean()) if finite.any() else math.inf


def mle_loss() -> Objective:
    """Negative log-likelihood of data batches ``{"x1": (B, d)}`` in latent coordinates (nats per
    configuration; add the frame's ``log_jacobian`` for the density on the target's space)."""

    def objective(flow, batch, generator):
        nll = -_latent_log_prob(flow, batch["x1"]).mean()
        return nll, {"nll": float(nll.detach())}

    return objective
