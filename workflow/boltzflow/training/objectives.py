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

__all__ = ["METHODS", "REGULARISERS", "Objective", "regflow_loss", "mle_loss"]

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


def mle_loss() -> Objective:
    """Negative log-likelihood of data batches ``{"x1": (B, d)}`` in latent coordinates (nats per
    configuration; add the frame's ``log_jacobian`` for the density on the target's space)."""

    def objective(flow, batch, generator):
        z0, logdet = flow.inverse(batch["x1"])
        log_q = -0.5 * (z0.square().sum(dim=1) + z0.shape[1] * math.log(2 * math.pi)) + logdet
        nll = -log_q.mean()
        return nll, {"nll": float(nll.detach())}

    return objective
