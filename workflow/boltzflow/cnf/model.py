"""The velocity field of a flow-matching continuous normalizing flow (CNF) on R^d.

The flow is the solution map ``phi`` of the ODE ``dx/dt = v(t, x)`` from ``t = 0`` to ``t = 1``
with a prior ``x0 ~ N(0, I_d)``: trained by :mod:`boltzflow.cnf.training`, integrated by
:mod:`boltzflow.cnf.sampling` (as a reflow teacher for RegFlow, arXiv 2506.01158, or as a
baseline Boltzmann generator with an exact log-density), saved by :mod:`boltzflow.cnf.io`. It
works on generic vectors ``(B, d)``; the caller does any molecular preprocessing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["VelocityField"]


class VelocityField(nn.Module):
    """MLP velocity field ``v(t, x)`` on R^d for ``t`` in [0, 1].

    The input is ``x`` concatenated with a Fourier embedding of ``t``,
    ``[sin(pi k t), cos(pi k t)]`` for ``k = 1 .. time_features / 2``, followed by ``layers``
    hidden ``Linear`` layers of width ``hidden`` with SiLU activations and a ``Linear`` output
    layer of width ``dim``.

    Parameters
    ----------
    dim : int
        Dimension ``d`` of the state.
    hidden : int
        Width of the hidden layers.
    layers : int
        Number of hidden layers (at least 1).
    time_features : int
        Number of time features; must be even (a sine and a cosine per frequency).
    """

    def __init__(self, dim: int, hidden: int = 256, layers: int = 4, time_features: int = 16):
        super().__init__()
        for name, value, low in (("dim", dim, 1), ("hidden", hidden, 1), ("layers", layers, 1),
                                 ("time_features", time_features, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if time_features % 2:
            raise ValueError(f"time_features must be even, got {time_features}")
        self.dim = dim
        self.hidden = hidden
        self.layers = layers
        self.time_features = time_features
        # Low integer frequencies only: t lives on [0, 1], and fast oscillations in t would force
        # adaptive solvers into small steps without helping the fit. A buffer, so that
        # ``.to(dtype)`` casts it with the weights.
        self.register_buffer(
            "frequencies", math.pi * torch.arange(1, time_features // 2 + 1, dtype=torch.float32))
        modules: list[nn.Module] = []
        width = dim + time_features
        for _ in range(layers):
            modules += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        modules.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*modules)

    def config(self) -> dict:
        """Constructor arguments, JSON-serialisable: ``VelocityField(**model.config())``."""
        return {"dim": self.dim, "hidden": self.hidden, "layers": self.layers,
                "time_features": self.time_features}

    def forward(self, t: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """Velocity at time ``t`` and positions ``x``.

        Parameters
        ----------
        t : torch.Tensor or float
            Time, a scalar (0-d tensor or float) shared by the batch or a tensor of shape
            ``(B,)``.
        x : torch.Tensor
            Positions, shape ``(B, d)``, in the dtype of the parameters.

        Returns
        -------
        torch.Tensor
            Velocities, shape ``(B, d)``.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, {self.dim}), got {got}")
        dtype = self.frequencies.dtype
        if x.dtype != dtype:
            raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {dtype}; "
                            f"cast the model (model.to({x.dtype})) or x (x.to({dtype}))")
        t = torch.as_tensor(t, dtype=dtype, device=x.device)
        batch = x.shape[0]
        if t.ndim == 0:
            t = t.expand(batch)
        elif t.shape != (batch,):
            raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
        angles = t[:, None] * self.frequencies
        return self.net(torch.cat([x, angles.sin(), angles.cos()], dim=1))


def _dtype_and_device(model: nn.Module, fallback: torch.Tensor) -> tuple[torch.dtype, torch.device]:
    """Dtype and device of the model's first floating parameter or buffer, else the fallback's."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return fallback.dtype, fallback.device
