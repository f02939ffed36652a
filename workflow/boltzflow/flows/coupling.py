"""Coupling layers: affine ("Res-NVP") and rational-quadratic spline (NSF) couplings.

A coupling layer splits the features into a conditioning set ``A`` and a transformed set ``T``;
``y_A = z_A`` and ``y_T = g(z_T; theta(z_A))`` with an elementwise monotone ``g`` whose parameters
come from a residual MLP of ``z_A`` (Dinh et al., 2017, "Density estimation using Real NVP";
Durkan et al., 2019, "Neural Spline Flows"). The Jacobian is triangular, so the log-determinant
is the sum of ``log g'`` over ``T`` and the inverse is one conditioner evaluation.

Direction: :meth:`CouplingLayer.forward` is the generative direction (noise -> data), the one
RegFlow trains and samples in; :meth:`CouplingLayer.inverse` gives the density of data points.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .spline import rq_spline_from_params, spline_parameter_count

__all__ = ["ResidualMLP", "CouplingLayer", "AffineCoupling", "SplineCoupling", "coupling_masks", "MASKS"]

MASKS = ("halves", "axes")


class ResidualMLP(nn.Module):
    """``depth`` hidden layers of width ``hidden`` with SiLU; every hidden layer after the first
    adds its input back (a residual connection). The output layer starts at zero, so a coupling
    layer built on it starts as the identity map.

    It has as many linear layers as an MLP with ``hidden_features = [hidden] * depth``.
    """

    def __init__(self, in_features: int, out_features: int, hidden: int = 256, depth: int = 2):
        super().__init__()
        if depth < 1 or hidden < 1:
            raise ValueError(f"need depth >= 1 and hidden >= 1, got depth={depth}, hidden={hidden}")
        self.inp = nn.Linear(in_features, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth - 1))
        self.out = nn.Linear(hidden, out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.inp(x))
        for layer in self.hidden:
            h = h + self.act(layer(h))
        return self.out(h)


def coupling_masks(dim: int, n_layers: int, kind: str = "halves", seed: int = 0) -> list[np.ndarray]:
    """The transformed feature indices of each of ``n_layers`` layers.

    ``halves``: each consecutive pair of layers draws a random permutation of the features
    (seeded) and transforms its first half, then its second half, so every feature is
    transformed once per pair and coupled with a different partner set each time.
    ``axes`` (for Cartesian latents ordered as (atom, x/y/z)): layer ``l`` transforms the
    coordinates along axis ``l mod 3`` given the other two axes.
    """
    if kind not in MASKS:
        raise ValueError(f"unknown mask kind {kind!r}; known: {', '.join(MASKS)}")
    if dim < 2:
        raise ValueError(f"a coupling flow needs at least 2 features, got {dim}")
    rng = np.random.default_rng(seed)
    masks = []
    if kind == "axes":
        if dim % 3:
            raise ValueError(f"'axes' masks need a dimension divisible by 3, got {dim}")
        for layer in range(n_layers):
            masks.append(np.arange(layer % 3, dim, 3))
        return masks
    half = dim // 2
    for layer in range(n_layers):
        if layer % 2 == 0:
            perm = rng.permutation(dim)
            masks.append(np.sort(perm[:half]))
        else:
            masks.append(np.sort(perm[half:]))
    return masks


class CouplingLayer(nn.Module):
    """Base class: holds the split and the conditioner; subclasses define the elementwise map."""

    def __init__(self, dim: int, transformed: np.ndarray, params_per_feature: int, hidden: int, depth: int):
        super().__init__()
        transformed = np.asarray(transformed, dtype=np.int64)
        if transformed.size == 0 or transformed.size == dim or len(set(transformed.tolist())) != transformed.size \
                or transformed.min() < 0 or transformed.max() >= dim:
            raise ValueError(f"transformed features must be a proper, non-empty subset of 0..{dim - 1}")
        conditioning = np.setdiff1d(np.arange(dim), transformed)
        order = np.concatenate([conditioning, transformed])
        self.dim = int(dim)
        self.n_transformed = int(transformed.size)
        self.register_buffer("conditioning", torch.as_tensor(conditioning))
        self.register_buffer("transformed", torch.as_tensor(transformed))
        self.register_buffer("unpermute", torch.as_tensor(np.argsort(order)))
        self.params_per_feature = int(params_per_feature)
        self.conditioner = ResidualMLP(conditioning.size, transformed.size * params_per_feature, hidden, depth)

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"input must have shape (B, {self.dim}), got {tuple(z.shape)}")
        za = z.index_select(1, self.conditioning)
        zt = z.index_select(1, self.transformed)
        params = self.conditioner(za).reshape(len(z), self.n_transformed, self.params_per_feature)
        return za, zt, params

    def _merge(self, za: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        return torch.cat([za, yt], dim=1).index_select(1, self.unpermute)

    def transform(self, zt: torch.Tensor, params: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise map of the transformed features and its per-element log-derivative."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise -> data: ``(y, log|det dy/dz|)`` with shapes ``(B, dim)`` and ``(B,)``."""
        za, zt, params = self._split(z)
        yt, logd = self.transform(zt, params, inverse=False)
        return self._merge(za, yt), logd.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> noise: ``(z, log|det dz/dy|)``."""
        ya, yt, params = self._split(y)
        zt, logd = self.transform(yt, params, inverse=True)
        return self._merge(ya, zt), logd.sum(dim=1)


class AffineCoupling(CouplingLayer):
    """``y_T = z_T exp(s) + t`` with ``(s, t)`` from a residual MLP of ``z_A`` ("Res-NVP").

    The log-scale is soft-clamped, ``s = c tanh(s_raw / c)``, so that one layer can stretch a
    coordinate by at most ``exp(c)``: unclamped scales are what makes affine flows blow up.
    """

    def __init__(self, dim: int, transformed: np.ndarray, hidden: int = 256, depth: int = 2,
                 scale_clamp: float = 3.0):
        super().__init__(dim, transformed, 2, hidden, depth)
        if not scale_clamp > 0:
            raise ValueError(f"scale_clamp must be > 0, got {scale_clamp}")
        self.scale_clamp = float(scale_clamp)

    def transform(self, zt, params, inverse):
        c = self.scale_clamp
        log_scale = c * torch.tanh(params[..., 0] / c)
        shift = params[..., 1]
        if inverse:
            return (zt - shift) * torch.exp(-log_scale), -log_scale
        return zt * torch.exp(log_scale) + shift, log_scale


class SplineCoupling(CouplingLayer):
    """Rational-quadratic spline coupling (NSF) on ``[-bound, bound]`` with identity tails."""

    def __init__(self, dim: int, transformed: np.ndarray, hidden: int = 256, depth: int = 2,
                 bins: int = 8, bound: float = 5.0):
        if bins < 2:
            raise ValueError(f"a spline needs at least 2 bins, got {bins}")
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound}")
        super().__init__(dim, transformed, spline_parameter_count(bins), hidden, depth)
        self.bins, self.bound = int(bins), float(bound)

    def transform(self, zt, params, inverse):
        return rq_spline_from_params(zt, params, self.bins, self.bound, inverse=inverse)
