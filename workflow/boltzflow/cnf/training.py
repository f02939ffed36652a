"""Conditional flow matching with the linear interpolant (Lipman et al. 2023; rectified flow, Liu et al. 2023)."""

from __future__ import annotations

import torch
from torch import nn

from boltzflow.cnf.model import _dtype_and_device

__all__ = ["flow_matching_loss"]


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, x1: torch.Tensor, sigma: float = 0.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Conditional flow-matching loss with the linear interpolant.

    For each pair ``(x0_i, x1_i)`` a time ``t_i ~ U(0, 1)`` (and, if ``sigma > 0``, a noise
    ``eps_i ~ N(0, I)``) is drawn and::

        x_t  = (1 - t) x0 + t x1 + sigma eps
        loss = mean_i || v(t_i, x_t,i) - (x1_i - x0_i) ||^2

    the squared error summed over dimensions and averaged over the batch. With ``sigma = 0``
    this is rectified flow / the optimal-transport path of Lipman et al. (2023); its minimiser is
    the marginal velocity field that carries the distribution of ``x0`` to that of ``x1``. A
    small ``sigma`` smooths the probability path (the target is unchanged).

    Parameters
    ----------
    model : nn.Module
        Velocity field called as ``model(t, x)`` with ``t`` of shape ``(B,)``.
    x0, x1 : torch.Tensor
        Source (usually prior) and target samples, shape ``(B, d)``; they are paired
        row by row (independently drawn for plain flow matching, teacher pairs for reflow).
        Cast to the model's dtype.
    sigma : float
        Standard deviation of the Gaussian smoothing of the path, >= 0.
    generator : torch.Generator, optional
        Source of the random ``t`` and ``eps``, on the device of ``x0``.

    Returns
    -------
    torch.Tensor
        The loss, a scalar.
    """
    if x0.ndim != 2 or x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape (B, d), got {tuple(x0.shape)} "
                         f"and {tuple(x1.shape)}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    dtype, _ = _dtype_and_device(model, x0)
    x0, x1 = x0.to(dtype), x1.to(dtype)
    t = torch.rand(x0.shape[0], generator=generator, dtype=dtype, device=x0.device)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    if sigma > 0:
        xt = xt + sigma * torch.randn(x0.shape, generator=generator, dtype=dtype, device=x0.device)
    return (model(t, xt) - (x1 - x0)).pow(2).sum(dim=1).mean()
