"""Monotonic rational-quadratic splines (Durkan et al., 2019, "Neural Spline Flows", Eq. 4-6).

A spline maps ``[-B, B]`` onto itself through ``K`` bins; each bin is a ratio of two quadratics
fixed by its two knots and the derivatives there. Outside ``[-B, B]`` it is the identity (linear
tails of slope 1, so the boundary derivatives are 1 and the map is continuously differentiable).

The functions here take *unconstrained* parameters per transformed element (from a conditioner
network) and turn them into knots with a minimum bin width, height and derivative, so the
inverse stays well conditioned. Everything is written with plain elementwise tensor operations
and one small gather per evaluation, which keeps the spline cheap on CPUs and compilable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["SplineKnots", "spline_knots", "rq_spline", "spline_parameter_count"]

#: the smallest bin width/height, as a fraction of the interval, and the smallest knot derivative
MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3


def spline_parameter_count(bins: int) -> int:
    """Unconstrained parameters per element: ``K`` widths, ``K`` heights and ``K - 1`` inner
    derivatives (the two boundary derivatives are 1, matching the identity tails)."""
    return 3 * bins - 1


class SplineKnots:
    """Knot positions ``xk``, ``yk`` (``(..., K + 1)``, from ``-B`` to ``B``) and the derivatives
    ``dk`` (``(..., K + 1)``) at the knots."""

    __slots__ = ("xk", "yk", "dk", "bound")

    def __init__(self, xk: torch.Tensor, yk: torch.Tensor, dk: torch.Tensor, bound: float):
        self.xk, self.yk, self.dk, self.bound = xk, yk, dk, float(bound)


def _cumulative_knots(raw: torch.Tensor, bound: float) -> torch.Tensor:
    bins = raw.shape[-1]
    sizes = MIN_BIN + (1.0 - MIN_BIN * bins) * torch.softmax(raw, dim=-1)
    knots = torch.cumsum(sizes, dim=-1)
    knots = F.pad(knots, (1, 0), value=0.0)
    # exact end points: the cumulative sum of the softmax is 1 only up to rounding
    knots = 2.0 * bound * knots - bound
    edge = torch.full_like(knots[..., :1], bound)
    return torch.cat([-edge, knots[..., 1:-1], edge], dim=-1)


def spline_knots(params: torch.Tensor, bins: int, bound: float) -> SplineKnots:
    """Knots from unconstrained parameters ``params`` of shape ``(..., 3 K - 1)``: softmax bin
    widths and heights (each at least ``MIN_BIN`` of the interval) and softplus inner derivatives
    (at least ``MIN_DERIVATIVE``); the boundary derivatives are 1."""
    if params.shape[-1] != spline_parameter_count(bins):
        raise ValueError(f"spline parameters must have last dimension {spline_parameter_count(bins)} "
                         f"for {bins} bins, got {params.shape[-1]}")
    raw_w, raw_h, raw_d = params[..., :bins], params[..., bins:2 * bins], params[..., 2 * bins:]
    xk = _cumulative_knots(raw_w, bound)
    yk = _cumulative_knots(raw_h, bound)
    # softplus(0) + MIN_DERIVATIVE is about 0.69: shift so that zero parameters give slope 1
    inner = MIN_DERIVATIVE + F.softplus(raw_d + _SOFTPLUS_ONE)
    one = torch.ones_like(inner[..., :1])
    dk = torch.cat([one, inner, one], dim=-1)
    return SplineKnots(xk, yk, dk, bound)


# softplus(x) = 1 - MIN_DERIVATIVE at x = log(exp(1 - MIN_DERIVATIVE) - 1)
_SOFTPLUS_ONE = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _bin_index(knots: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Index ``k`` of the bin ``[knots_k, knots_{k+1})`` holding ``value`` (clamped to 0..K-1)."""
    bins = knots.shape[-1] - 1
    # counting the inner knots below the value is a searchsorted that vectorises well for small K
    k = (value[..., None] >= knots[..., 1:-1]).sum(dim=-1)
    return k.clamp_(0, bins - 1)


def rq_spline(x: torch.Tensor, knots: SplineKnots, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the spline (or its inverse) elementwise; returns ``(y, log|dy/dx|)`` of the map that
    was applied (for ``inverse=True`` the log-derivative of the inverse map).

    ``x`` has shape ``(...)`` and the knots ``(..., K + 1)``. Values outside ``[-B, B]`` pass
    through unchanged with log-derivative 0.
    """
    bound = knots.bound
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    k = _bin_index(knots.yk if inverse else knots.xk, xc)[..., None]
    x0 = knots.xk.gather(-1, k)[..., 0]
    x1 = knots.xk.gather(-1, k + 1)[..., 0]
    y0 = knots.yk.gather(-1, k)[..., 0]
    y1 = knots.yk.gather(-1, k + 1)[..., 0]
    d0 = knots.dk.gather(-1, k)[..., 0]
    d1 = knots.dk.gather(-1, k + 1)[..., 0]
    w, h = x1 - x0, y1 - y0
    s = h / w
    if not inverse:
        z = ((xc - x0) / w).clamp(0.0, 1.0)
        zz = z * (1.0 - z)
        denominator = s + (d0 + d1 - 2.0 * s) * zz
        y = y0 + h * (s * z * z + d0 * zz) / denominator
        derivative = s * s * (d1 * z * z + 2.0 * s * zz + d0 * (1.0 - z) ** 2) / denominator ** 2
        log_derivative = torch.log(derivative)
    else:
        # solve the bin's quadratic a z^2 + b z + c = 0 for its root in [0, 1] (NSF Eq. 6-8).
        # The paper's 2c / (-b - sqrt(b^2 - 4ac)) cancels when b < 0 (a steep right knot), losing
        # up to 6 digits; with q = -(b + sign(b) sqrt(.)) / 2 the same root is c / q for b >= 0
        # and q / a for b < 0, both free of cancellation.
        dy = xc - y0
        a = h * (s - d0) + dy * (d0 + d1 - 2.0 * s)
        b = h * d0 - dy * (d0 + d1 - 2.0 * s)
        c = -s * dy
        root = torch.sqrt((b * b - 4.0 * a * c).clamp(min=0.0))
        negative = b < 0
        q = -0.5 * (b + torch.where(negative, -root, root))
        numerator = torch.where(negative, q, c)
        denominator = torch.where(negative, a, q)
        # a zero denominator only occurs with a zero numerator (z = 0); keep gradients finite
        denominator = torch.where(denominator == 0, torch.ones_like(denominator), denominator)
        z = (numerator / denominator).clamp(0.0, 1.0)
        zz = z * (1.0 - z)
        denominator = s + (d0 + d1 - 2.0 * s) * zz
        y = x0 + z * w
        derivative = s * s * (d1 * z * z + 2.0 * s * zz + d0 * (1.0 - z) ** 2) / denominator ** 2
        log_derivative = -torch.log(derivative)
    y = torch.where(inside, y, x)
    log_derivative = torch.where(inside, log_derivative, torch.zeros_like(log_derivative))
    return y, log_derivative
