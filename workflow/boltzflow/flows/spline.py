"""Monotonic rational-quadratic splines (Durkan et al., 2019, "Neural Spline Flows", Eq. 4-6)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["SplineKnots", "spline_knots", "rq_spline", "rq_spline_from_params", "rq_spline_split",
           "rq_spline_planes", "spline_parameter_count"]

#: the smallest bin width/height, as a fraction of the interval, and the smallest knot derivative
MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3

# softplus(x) = 1 - MIN_DERIVATIVE at x = log(exp(1 - MIN_DERIVATIVE) - 1)
_SOFTPLUS_ONE = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


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


def _check_parameters(params: torch.Tensor, bins: int) -> None:
    if params.shape[-1] != spline_parameter_count(bins):
        raise ValueError(f"spline parameters must have last dimension {spline_parameter_count(bins)} "
                         f"for {bins} bins, got {params.shape[-1]}")


def _knot_scale(bins: int, bound: float) -> float:
    """``2 B (1 - K MIN_BIN)``: inner knot ``j`` sits at ``-B + scale * u_j`` (see :func:`_knot_cumsum`)."""
    return 2.0 * bound * (1.0 - MIN_BIN * bins)


def _knot_cumsum(widths_heights: torch.Tensor) -> torch.Tensor:
    """``u``, shape ``(..., 2, K - 1, T)``, such that the inner knots of ``x`` (row 0) and ``y``
    (row 1) are ``-B + _knot_scale(K, B) * u``; from the unconstrained widths (row 0) and heights
    (row 1), shape ``(..., 2, K, T)``.

    Bin sizes are ``MIN_BIN + (1 - K MIN_BIN) softmax(raw)`` of the interval ``2 B``, so
    ``u_j = cumsum(softmax + MIN_BIN / (1 - K MIN_BIN))_j``. Searching bins in ``u`` rather than
    in knot positions keeps the per-knot offsets out of the work on all ``K`` bins; only the two
    knots of each element's bin are converted to positions.
    """
    bins = widths_heights.shape[-2]
    u = torch.softmax(widths_heights, dim=-2) + MIN_BIN / (1.0 - MIN_BIN * bins)
    # K - 2 adds of whole (..., 2, T) planes: torch.cumsum over a short axis runs element by
    # element and took longer than the softmax. In place when nothing is recorded; with autograd
    # the in-place version would record a chain of slice copies (slower backward), so the planes
    # are stacked instead. Both add in the same order and give the same numbers.
    if not (torch.is_grad_enabled() and u.requires_grad):
        for j in range(1, bins - 1):
            u[..., j, :] += u[..., j - 1, :]
        return u[..., :bins - 1, :]
    columns = u.unbind(-2)  # one backward node for all of them, unlike K separate selects
    planes = [columns[0]]
    for j in range(1, bins - 1):
        planes.append(planes[-1] + columns[j])
    return torch.stack(planes, dim=-2)


def _inner_derivatives(raw: torch.Tensor) -> torch.Tensor:
    # softplus(0) + MIN_DERIVATIVE is about 0.69: shift so that zero parameters give slope 1
    return F.softplus(raw + _SOFTPLUS_ONE) + MIN_DERIVATIVE


def spline_knots(params: torch.Tensor, bins: int, bound: float) -> SplineKnots:
    """Knots from unconstrained parameters ``params`` of shape ``(..., 3 K - 1)``: softmax bin
    widths and heights (each at least ``MIN_BIN`` of the interval) and softplus inner derivatives
    (at least ``MIN_DERIVATIVE``); the boundary derivatives are 1 and the end knots are exactly
    ``-B`` and ``B``."""
    _check_parameters(params, bins)
    u = _knot_cumsum(params[..., :2 * bins].unflatten(-1, (2, bins))[..., None])[..., 0]
    inner = u * _knot_scale(bins, bound) - bound
    edge = inner.new_full((1,), bound).expand(*inner.shape[:-1], 1)
    knots = torch.cat([-edge, inner, edge], dim=-1)
    inner_d = _inner_derivatives(params[..., 2 * bins:])
    one = torch.ones_like(inner_d[..., :1])
    return SplineKnots(knots[..., 0, :], knots[..., 1, :], torch.cat([one, inner_d, one], dim=-1), bound)


def _bin_index(knots: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Index ``k`` of the bin ``[knots_k, knots_{k+1})`` holding ``value`` (clamped to 0..K-1)."""
    bins = knots.shape[-1] - 1
    # counting the inner knots below the value is a searchsorted that vectorises well for small K
    k = (value[..., None] >= knots[..., 1:-1]).sum(dim=-1)
    return k.clamp_(0, bins - 1)


def _rq_bin(xc: torch.Tensor, x0: torch.Tensor, w: torch.Tensor, y0: torch.Tensor, h: torch.Tensor,
            d0: torch.Tensor, d1: torch.Tensor, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The rational-quadratic map of one bin (left end ``(x0, y0)``, width ``w``, height ``h``,
    end derivatives ``d0``, ``d1``) at ``xc``, which lies in the bin (in its image if
    ``inverse``); returns the image and the log-derivative of the map applied."""
    s = h / w
    if not inverse:
        z = ((xc - x0) / w).clamp(0.0, 1.0)
        zz = z * (1.0 - z)
        denominator = s + (d0 + d1 - 2.0 * s) * zz
        y = y0 + h * (s * z * z + d0 * zz) / denominator
        derivative = s * s * (d1 * z * z + 2.0 * s * zz + d0 * (1.0 - z) ** 2) / denominator ** 2
        return y, torch.log(derivative)
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
    return y, -torch.log(derivative)


def rq_spline(x: torch.Tensor, knots: SplineKnots, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the spline (or its inverse) elementwise; returns ``(y, log|dy/dx|)`` of the map that
    was applied (for ``inverse=True`` the log-derivative of the inverse map).

    ``x`` has shape ``(...)`` and the knots ``(..., K + 1)``. Values outside ``[-B, B]`` pass
    through unchanged with log-derivative 0.

    A spline maps ``[-B, B]`` onto itself through ``K`` bins; each bin is a ratio of two quadratics
    fixed by its two knots and the derivatives there. Outside ``[-B, B]`` it is the identity (linear
    tails of slope 1, so the boundary derivatives are 1 and the map is continuously differentiable).

    The functions here take *unconstrained* parameters per transformed element (from a conditioner
    network) and turn them into knots with a minimum bin width, height and derivative, so the
    inverse stays well conditioned.

    Ways in:

    * :func:`spline_knots` + :func:`rq_spline` build every knot explicitly (a :class:`SplineKnots`),
      for tests and for code that wants to look at a spline;
    * :func:`rq_spline_from_params` (parameters ``(..., 3 K - 1)``) and :func:`rq_spline_split`
      (widths and heights ``(..., 2, K)``, derivatives ``(..., K - 1)``) evaluate the same spline
      straight from the parameters;
    * :func:`rq_spline_planes` is the same again with the bins *before* the elements, ``(B, 2, K, T)``
      for ``T`` elements per row. It is what the coupling layers call, and what the other two run on.

    Why the last layout: on a CPU the cost of a spline is the few passes over all ``K`` bins of every
    element (softmax, cumulative sum, bin search), not the few dozen operations on one value per
    element. With the bins on the last axis those passes run along axes of length ``K = 8``, which
    PyTorch does one short row at a time; with the elements last they are full-width vector
    operations. The evaluation never builds the padded knot arrays or the derivatives at all ``K + 1``
    knots either: it gathers the two ends of each element's bin and patches the outer ones.
    """
    bound = knots.bound
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    k = _bin_index(knots.yk if inverse else knots.xk, xc)[..., None]
    ends = torch.cat([k, k + 1], dim=-1)
    x0, x1 = knots.xk.gather(-1, ends).unbind(-1)
    y0, y1 = knots.yk.gather(-1, ends).unbind(-1)
    d0, d1 = knots.dk.gather(-1, ends).unbind(-1)
    y, log_derivative = _rq_bin(xc, x0, x1 - x0, y0, y1 - y0, d0, d1, inverse)
    return torch.where(inside, y, x), torch.where(inside, log_derivative, 0.0)


def rq_spline_from_params(x: torch.Tensor, params: torch.Tensor, bins: int, bound: float,
                          inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``rq_spline(x, spline_knots(params, bins, bound), inverse)`` without building the knots.

    Parameters
    ----------
    x : torch.Tensor
        Values, shape ``(...)``.
    params : torch.Tensor
        Unconstrained spline parameters, shape ``(..., 3 K - 1)`` (see :func:`spline_knots`).
    bins, bound : int, float
        ``K`` and ``B``.
    inverse : bool
        Apply the inverse spline.

    Returns
    -------
    y, log_derivative : torch.Tensor
        As :func:`rq_spline`, and equal to it.
    """
    _check_parameters(params, bins)
    return rq_spline_split(x, params[..., :2 * bins].unflatten(-1, (2, bins)), params[..., 2 * bins:],
                           bound, inverse)


def rq_spline_split(x: torch.Tensor, widths_heights: torch.Tensor, derivatives: torch.Tensor, bound: float,
                    inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rq_spline_from_params` with the parameters already split into the unconstrained
    widths and heights, shape ``(..., 2, K)`` (row 0 widths, row 1 heights), and inner
    derivatives, shape ``(..., K - 1)``."""
    y, log_derivative = rq_spline_planes(x[..., None], widths_heights[..., None], derivatives[..., None], bound,
                                         inverse)
    return y[..., 0], log_derivative[..., 0]


def rq_spline_planes(x: torch.Tensor, widths_heights: torch.Tensor, derivatives: torch.Tensor, bound: float,
                     inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The spline of :func:`rq_spline_split` with the elements on the last axis.

    Parameters
    ----------
    x : torch.Tensor
        Values, shape ``(..., T)``.
    widths_heights : torch.Tensor
        Unconstrained bin widths (``[..., 0, :, :]``) and heights (``[..., 1, :, :]``) of every
        element, shape ``(..., 2, K, T)``.
    derivatives : torch.Tensor
        Unconstrained inner knot derivatives, shape ``(..., K - 1, T)``.
    bound : float
        ``B``.
    inverse : bool
        Apply the inverse spline.

    Returns
    -------
    y, log_derivative : torch.Tensor
        Shape ``(..., T)``: the image of ``x`` and the log-derivative of the map applied (values
        outside ``[-B, B]`` pass through with log-derivative 0).
    """
    bins = widths_heights.shape[-2]
    if (bins < 2 or widths_heights.shape[-3] != 2 or derivatives.shape[-2] != bins - 1
            or widths_heights.shape[-1] != x.shape[-1] or derivatives.shape[-1] != x.shape[-1]):
        raise ValueError(f"need values (..., T), widths/heights (..., 2, K, T) and derivatives (..., K - 1, T) "
                         f"with K >= 2, got {tuple(x.shape)}, {tuple(widths_heights.shape)} and "
                         f"{tuple(derivatives.shape)}")
    u = _knot_cumsum(widths_heights)
    scale = _knot_scale(bins, bound)
    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    # the bin index, 0..K-1 by construction: the number of inner knots at or below the value
    k = (u[..., int(inverse), :, :] <= ((xc + bound) / scale).unsqueeze(-2)).sum(dim=-2, keepdim=True)
    first, last = k[..., 0, :] == 0, k[..., 0, :] == bins - 1
    # The bin runs from knot k to knot k + 1, i.e. from inner knot k - 1 to inner knot k; the outer
    # knots (-B, B, and slope 1 there) are not stored, so clamp the indices into the inner ones
    # and patch the first and last bins afterwards. One gather fetches both ends of x and y, and
    # one the raw derivatives, which only get their softplus here, at two values per element.
    ends = torch.cat([k - 1, k], dim=-2).clamp_(0, bins - 2)
    xy = u.gather(-2, ends.unsqueeze(-3).expand(*u.shape[:-2], 2, u.shape[-1])) * scale - bound
    x0 = torch.where(first, -bound, xy[..., 0, 0, :])
    x1 = torch.where(last, bound, xy[..., 0, 1, :])
    y0 = torch.where(first, -bound, xy[..., 1, 0, :])
    y1 = torch.where(last, bound, xy[..., 1, 1, :])
    d = _inner_derivatives(derivatives.gather(-2, ends))
    d0 = torch.where(first, 1.0, d[..., 0, :])
    d1 = torch.where(last, 1.0, d[..., 1, :])
    y, log_derivative = _rq_bin(xc, x0, x1 - x0, y0, y1 - y0, d0, d1, inverse)
    return torch.where(inside, y, x), torch.where(inside, log_derivative, 0.0)
