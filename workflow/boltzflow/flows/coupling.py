"""Coupling layers: affine ("Res-NVP") and rational-quadratic spline (NSF) couplings."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .spline import rq_spline_from_params, rq_spline_planes, spline_parameter_count

__all__ = ["ResidualMLP", "CouplingLayer", "AffineCoupling", "SplineCoupling", "coupling_masks", "MASKS"]

MASKS = ("halves", "axes")


def _padded_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``F.linear(h, weight, bias)`` computed with the output width rounded up to a multiple of 8
    (zero rows), returning a view of the real columns.

    MKL's float32 GEMM takes a slow path for output widths that are not a multiple of 8: with a
    (10000, 256) input on one core, widths 713, 714 and 716 ran at 40-49 GFLOP/s against ~75 for
    720 or 736 (and 217 at 38 against 70 for 224). A 63-dim flow hits this every other layer.
    """
    n = weight.shape[0]
    extra = -n % 8
    if extra:
        weight = F.pad(weight, (0, 0, 0, extra))
        bias = F.pad(bias, (0, extra))
        return F.linear(h, weight, bias)[:, :n]
    return F.linear(h, weight, bias)


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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations, ``(B, hidden)`` (what :attr:`out` is applied to)."""
        h = self.act(self.inp(x))
        for layer in self.hidden:
            h = h + self.act(layer(h))
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


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
    """Base class: holds the split and the conditioner; subclasses define the elementwise map.

    A coupling layer splits the features into a conditioning set ``A`` and a transformed set ``T``;
    ``y_A = z_A`` and ``y_T = g(z_T; theta(z_A))`` with an elementwise monotone ``g`` whose parameters
    come from a residual MLP of ``z_A`` (Dinh et al., 2017, "Density estimation using Real NVP";
    Durkan et al., 2019, "Neural Spline Flows"). The Jacobian is triangular, so the log-determinant
    is the sum of ``log g'`` over ``T`` and the inverse is one conditioner evaluation.

    Direction: :meth:`CouplingLayer.forward` is the generative direction (noise -> data), the one
    RegFlow trains and samples in; :meth:`CouplingLayer.inverse` gives the density of data points.
    """

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
        # no longer used (outputs are merged with index_copy) but part of saved state dicts
        self.register_buffer("unpermute", torch.as_tensor(np.argsort(order)))
        self.params_per_feature = int(params_per_feature)
        self.conditioner = ResidualMLP(conditioning.size, transformed.size * params_per_feature, hidden, depth)

    def _split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"input must have shape (B, {self.dim}), got {tuple(z.shape)}")
        return z.index_select(1, self.conditioning), z.index_select(1, self.transformed)

    def _merge(self, z: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        # a copy of the input with the transformed columns replaced: one pass, no concatenation
        return z.index_copy(1, self.transformed, yt)

    def transform(self, zt: torch.Tensor, params: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise map of the transformed features and its per-element log-derivative, given
        the conditioner's output as ``(B, n_transformed, params_per_feature)``. :meth:`forward`
        and :meth:`inverse` compute the same map from a regrouped output (see ``_head``)."""
        raise NotImplementedError

    def _head(self, h: torch.Tensor) -> Any:
        """The elementwise map's parameters from the conditioner's hidden features ``h``, in
        whatever layout :meth:`_elementwise` works fastest with (subclasses override both)."""
        return self.conditioner.out(h).reshape(len(h), self.n_transformed, self.params_per_feature)

    def _elementwise(self, zt: torch.Tensor, head: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(zt, head, inverse)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise -> data: ``(y, log|det dy/dz|)`` with shapes ``(B, dim)`` and ``(B,)``."""
        za, zt = self._split(z)
        yt, logd = self._elementwise(zt, self._head(self.conditioner.features(za)), inverse=False)
        return self._merge(z, yt), logd.sum(dim=1)

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data -> noise: ``(z, log|det dz/dy|)``."""
        ya, yt = self._split(y)
        zt, logd = self._elementwise(yt, self._head(self.conditioner.features(ya)), inverse=True)
        return self._merge(y, zt), logd.sum(dim=1)


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

    def _head(self, h):
        # The output rows are (feature, [K widths, K heights, K - 1 derivatives]). Two products
        # with the rows regrouped parameter-major give the widths and heights as one (B, 2, K, T)
        # block and the derivatives as a (B, K - 1, T) one: the layout of rq_spline_planes, where
        # the passes over all bins are full-width vector operations along the features.
        t, k = self.n_transformed, self.bins
        weight = self.conditioner.out.weight.view(t, self.params_per_feature, -1).transpose(0, 1)
        bias = self.conditioner.out.bias.view(t, self.params_per_feature).t()
        widths_heights = _padded_linear(h, weight[:2 * k].reshape(2 * k * t, -1), bias[:2 * k].reshape(-1))
        derivatives = _padded_linear(h, weight[2 * k:].reshape((k - 1) * t, -1), bias[2 * k:].reshape(-1))
        return widths_heights.view(len(h), 2, k, t), derivatives.view(len(h), k - 1, t)

    def _elementwise(self, zt, head, inverse):
        return rq_spline_planes(zt, head[0], head[1], self.bound, inverse=inverse)
