"""A flow-matching continuous normalizing flow (CNF) on R^d with an exact log-likelihood.

The flow is the solution map ``phi`` of the ODE ``dx/dt = v(t, x)`` from ``t = 0`` to ``t = 1``,
with a prior ``x0 ~ N(0, I_d)`` at ``t = 0``. It serves two purposes in the workflow:

* a *teacher*: :func:`integrate` pushes prior samples ``x0`` to ``x1 = phi(x0)``, and the pairs
  ``(x0, x1)`` are the "reflow" regression targets for training discrete normalizing flows
  (RegFlow, arXiv 2506.01158);
* a *baseline Boltzmann generator*: :func:`sample_with_log_prob` and :func:`log_prob` give the
  exact model log-density, for importance weights and likelihood metrics.

Everything works on generic vectors, shape ``(B, d)``; the caller does any molecular
preprocessing (alignment, internal coordinates, removing the centre of mass, ...).

Training
--------
:func:`flow_matching_loss` is conditional flow matching with the linear interpolant (Lipman et
al. 2023, "rectified flow" of Liu et al. 2023): with ``t ~ U(0, 1)``, ``x_t = (1 - t) x0 + t x1``
and target velocity ``x1 - x0``, whose minimiser over ``v`` is the marginal velocity that
transports the prior to the data distribution.

Log-likelihood
--------------
Along a trajectory the log-density obeys the instantaneous change of variables
``d/dt log p_t(x(t)) = -div_x v(t, x(t))``, so::

    log q(x1) = log N(x0; 0, I) - int_0^1 div_x v(t, x(t)) dt.

The divergence is computed *exactly* (the trace of the ``d x d`` Jacobian, one backward pass
per dimension), not with Hutchinson's stochastic estimator: an unbiased but noisy log-density
would make importance weights noisy, which is what a Boltzmann generator is judged on. The
price is about ``d`` times the cost of a velocity evaluation per ODE step.

Error control
-------------
torchdiffeq's default error norm is the RMS over the whole state tensor, so with a batch of
samples the error of one sample is diluted by all the others. Here the adaptive solvers use a
per-sample norm instead: the step is accepted only if *every* sample's RMS error over its
coordinates, and (for the log-density) its error in the integrated divergence, are within
tolerance. The step size is still shared by a batch, so results depend on ``batch_size`` at the
level of the tolerance, not beyond it.
"""

from __future__ import annotations

import copy
import math
import time

import torch
from torch import nn
from torchdiffeq import odeint

__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_STEP_METHODS",
    "VelocityField",
    "flow_matching_loss",
    "integrate",
    "log_prob",
    "sample_with_log_prob",
]

#: torchdiffeq solvers with step-size control (``atol`` / ``rtol`` apply).
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
#: torchdiffeq solvers run on a uniform grid of ``steps`` steps.
FIXED_STEP_METHODS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")


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


def integrate(model: nn.Module, x0: torch.Tensor, *, method: str = "dopri5", atol: float = 1e-5,
              rtol: float = 1e-5, batch_size: int = 4096, reverse: bool = False, steps: int = 100,
              stats: dict | None = None) -> torch.Tensor:
    """Push points through the flow: ``x1 = phi(x0)``, or ``x0 = phi^-1(x1)`` if ``reverse``.

    Integrates ``dx/dt = model(t, x)`` from ``t = 0`` to ``t = 1`` (from 1 to 0 when
    ``reverse``) with :func:`torchdiffeq.odeint`, in batches and without gradients, in the
    dtype and on the device of the model's parameters.

    Parameters
    ----------
    model : nn.Module
        Velocity field ``model(t, x)``, ``t`` a 0-d tensor and ``x`` of shape ``(B, d)``.
    x0 : torch.Tensor
        Starting points, shape ``(N, d)`` (the ``x1`` to map back when ``reverse``).
    method : str
        A torchdiffeq solver: one of :data:`ADAPTIVE_METHODS` (uses ``atol`` and ``rtol``) or of
        :data:`FIXED_STEP_METHODS` (uses ``steps`` uniform steps).
    atol, rtol : float
        Absolute and relative tolerance of the adaptive solvers, per sample (see the module
        docstring).
    batch_size : int
        Number of points integrated together.
    reverse : bool
        Integrate backwards, from ``t = 1`` to ``t = 0``.
    steps : int
        Number of steps of a fixed-step method.
    stats : dict, optional
        If given, receives ``"nfe"`` (velocity evaluations summed over batches),
        ``"nfe_per_batch"`` and ``"seconds"``.

    Returns
    -------
    torch.Tensor
        The end points, shape ``(N, d)``, with the dtype and device of ``x0``.
    """
    _check_points(x0, "x0")
    dtype, device = _dtype_and_device(model, x0)
    counter = _Counter()

    def velocity(t, x):
        counter.calls += 1
        return model(t, x)

    start = time.perf_counter()
    out, per_batch = [], []
    with torch.no_grad():
        for chunk in x0.to(device=device, dtype=dtype).split(_positive("batch_size", batch_size)):
            counter.calls = 0
            out.append(_solve(velocity, chunk, chunk.shape[1], method=method, atol=atol, rtol=rtol,
                              steps=steps, reverse=reverse))
            per_batch.append(counter.calls)
    result = torch.cat(out) if out else x0.to(device=device, dtype=dtype).clone()
    _record(stats, per_batch, start)
    return result.to(device=x0.device, dtype=x0.dtype)


def sample_with_log_prob(model: nn.Module, n_or_x0: int | torch.Tensor, *, atol: float = 1e-7,
                         rtol: float = 1e-7, method: str = "dopri5", batch_size: int = 1024,
                         dtype: torch.dtype = torch.float64,
                         generator: torch.Generator | None = None, steps: int = 100,
                         stats: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples of the flow and their exact log-density.

    Integrates the augmented ODE ``d/dt [x, l] = [v(t, x), -div_x v(t, x)]`` from ``t = 0`` to
    ``t = 1`` starting at ``[x0, 0]`` and returns ``x1`` and
    ``log q(x1) = log N(x0; 0, I) + l(1)``. The divergence is exact.

    Parameters
    ----------
    model : nn.Module
        Velocity field. It is not modified: a copy cast to ``dtype`` is integrated. It must
        treat the samples of a batch independently (no batch normalisation in training mode),
        since the divergence is read off per-sample gradients of batch sums.
    n_or_x0 : int or torch.Tensor
        Number of prior samples to draw (then the model needs a ``dim`` attribute), or the
        prior samples themselves, shape ``(N, d)``.
    atol, rtol : float
        Per-sample tolerances of an adaptive solver, on ``x`` and on the integrated divergence.
    method : str
        A torchdiffeq solver, see :func:`integrate`.
    batch_size : int
        Number of samples integrated together; memory and time grow linearly with it.
    dtype : torch.dtype
        Dtype of the integration (float64 by default: the log-density is an integral of
        divergences that partly cancel).
    generator : torch.Generator, optional
        Source of ``x0 = torch.randn((n, d), dtype=dtype)`` when ``n_or_x0`` is an int.
    steps : int
        Number of steps of a fixed-step method.
    stats : dict, optional
        If given, receives ``"nfe"`` (evaluations of velocity and divergence, summed over
        batches), ``"nfe_per_batch"`` and ``"seconds"``.

    Returns
    -------
    x1 : torch.Tensor
        Samples, shape ``(N, d)``, float64.
    log_q : torch.Tensor
        Their log-density under the flow, shape ``(N,)``, float64.
    """
    model_copy, device = _working_copy(model, dtype)
    if isinstance(n_or_x0, torch.Tensor):
        _check_points(n_or_x0, "x0")
        x0 = n_or_x0.to(device=device, dtype=dtype)
        out_device = n_or_x0.device
    else:
        n = n_or_x0
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n_or_x0 must be a non-negative int or a tensor, got {n!r}")
        dim = getattr(model, "dim", None)
        if not isinstance(dim, int):
            raise TypeError("to draw samples the model needs an integer `dim` attribute; "
                            "pass the prior samples x0 instead")
        draw_device = generator.device if generator is not None else device
        x0 = torch.randn((n, dim), generator=generator, dtype=dtype,
                         device=draw_device).to(device)
        out_device = device
    x1, delta = _augmented(model_copy, x0, reverse=False, method=method, atol=atol, rtol=rtol,
                           batch_size=batch_size, steps=steps, stats=stats)
    log_q = _standard_normal_log_prob(x0) + delta.double()
    return x1.to(device=out_device, dtype=torch.float64), log_q.to(out_device)


def log_prob(model: nn.Module, x1: torch.Tensor, *, atol: float = 1e-7, rtol: float = 1e-7,
             method: str = "dopri5", batch_size: int = 1024, dtype: torch.dtype = torch.float64,
             steps: int = 100, stats: dict | None = None) -> torch.Tensor:
    """Exact log-density of the flow at given points.

    Integrates the augmented ODE ``d/dt [x, l] = [v(t, x), -div_x v(t, x)]`` backwards from
    ``[x1, 0]`` at ``t = 1`` to ``t = 0``, which gives ``x0 = phi^-1(x1)`` and
    ``l(0) = int_0^1 div v dt``, and returns ``log N(x0; 0, I) - l(0)``. This is the same
    quantity as the ``log_q`` of :func:`sample_with_log_prob`, up to the ODE tolerance.

    Parameters
    ----------
    model : nn.Module
        Velocity field; not modified (see :func:`sample_with_log_prob`).
    x1 : torch.Tensor
        Points, shape ``(N, d)``.
    atol, rtol, method, batch_size, dtype, steps, stats
        As for :func:`sample_with_log_prob`.

    Returns
    -------
    torch.Tensor
        ``log q(x1)``, shape ``(N,)``, float64, on the device of ``x1``.
    """
    _check_points(x1, "x1")
    model_copy, device = _working_copy(model, dtype)
    x0, integral = _augmented(model_copy, x1.to(device=device, dtype=dtype), reverse=True,
                              method=method, atol=atol, rtol=rtol, batch_size=batch_size,
                              steps=steps, stats=stats)
    # Backwards, the augmented coordinate accumulates -int_1^0 div v dt = +int_0^1 div v dt.
    return (_standard_normal_log_prob(x0) - integral.double()).to(x1.device)


# --- internals ----------------------------------------------------------------------------------


class _Counter:
    calls = 0


def _velocity_and_divergence(model: nn.Module, t: torch.Tensor,
                             x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity ``v(t, x)``, shape ``(B, d)``, and its exact divergence, shape ``(B,)``.

    The divergence is ``sum_i dv_i/dx_i`` with one backward pass per dimension ``i`` through a
    single forward pass: the gradient of ``sum_b v_i(x_b)`` with respect to ``x`` holds every
    sample's ``dv_i/dx`` (samples do not interact), of which only column ``i`` is kept.

    Why this and not ``vmap(jacrev)``: on one CPU thread, for an untrained
    ``VelocityField(d, hidden=256, layers=4)`` and a batch of 1000, one evaluation of velocity
    plus divergence took (float64) 1.7 s for d = 63 and 3.7 s for d = 130 with this loop,
    against 2.3 s and 5.6 s with ``vmap(jacrev)`` and 3.2 s and 9.6 s with ``vmap(jacfwd)``
    (float32: 0.7 / 1.5 s against 1.1 / 2.6 s and 1.6 / 4.4 s; a forward pass alone is ~20 ms).
    The loop works on ``(B, hidden)`` activations, which stay in cache, where the vmapped
    Jacobians work on ``(B * d, hidden)`` ones; it also needs no more memory than one backward
    pass. The cost is inherent: any exact divergence of an MLP costs ~``d`` passes.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        v = model(t, x)
        if v.shape != x.shape:
            raise ValueError(f"the velocity must have the shape of x, {tuple(x.shape)}, "
                             f"got {tuple(v.shape)}")
        divergence = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        last = x.shape[1] - 1
        for i in range(x.shape[1]):
            (grad,) = torch.autograd.grad(v[:, i].sum(), x, retain_graph=i < last)
            divergence = divergence + grad[:, i]
    return v.detach(), divergence.detach()


def _augmented(model: nn.Module, x: torch.Tensor, *, reverse: bool, method: str, atol: float,
               rtol: float, batch_size: int, steps: int,
               stats: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate ``[x, l]`` with ``dl/dt = -div v``, ``l = 0`` at the start; return the end ``x``
    and ``l``."""
    dim = x.shape[1]
    counter = _Counter()

    def dynamics(t, state):
        counter.calls += 1
        v, divergence = _velocity_and_divergence(model, t, state[:, :dim])
        return torch.cat([v, -divergence[:, None]], dim=1)

    start = time.perf_counter()
    xs, ls, per_batch = [], [], []
    with torch.no_grad():
        for chunk in x.split(_positive("batch_size", batch_size)):
            counter.calls = 0
            state = torch.cat([chunk, chunk.new_zeros(chunk.shape[0], 1)], dim=1)
            end = _solve(dynamics, state, dim, method=method, atol=atol, rtol=rtol, steps=steps,
                         reverse=reverse)
            xs.append(end[:, :dim])
            ls.append(end[:, dim])
            per_batch.append(counter.calls)
    _record(stats, per_batch, start)
    if not xs:
        return x.clone(), x.new_zeros(0)
    return torch.cat(xs), torch.cat(ls)


def _solve(func, y0: torch.Tensor, n_state: int, *, method: str, atol: float, rtol: float,
           steps: int, reverse: bool) -> torch.Tensor:
    """One torchdiffeq solve of ``dy/dt = func(t, y)`` over [0, 1] (or [1, 0]); returns the end.

    ``y0`` has shape ``(B, n_state + n_extra)``: the first ``n_state`` columns are the position,
    any further column is an integrated scalar (the log-density) checked on its own.
    """
    t = torch.tensor([1.0, 0.0] if reverse else [0.0, 1.0], dtype=y0.dtype, device=y0.device)
    if method in ADAPTIVE_METHODS:
        options = {"norm": _per_sample_norm(n_state)}
    elif method in FIXED_STEP_METHODS:
        n_steps = _positive("steps", steps)
        # An explicit grid rather than step_size = 1 / steps: rounding in torchdiffeq's
        # ceil(1 / step_size) can add a spurious extra step.
        options = {"grid_constructor":
                   lambda f, y, tt: torch.linspace(tt[0].item(), tt[-1].item(), n_steps + 1,
                                                   dtype=tt.dtype, device=tt.device)}
    else:
        raise ValueError(f"unknown method {method!r}; expected one of "
                         f"{ADAPTIVE_METHODS + FIXED_STEP_METHODS}")
    return odeint(func, y0, t, method=method, atol=atol, rtol=rtol, options=options)[-1]


def _per_sample_norm(n_state: int):
    """Error norm for torchdiffeq: the worst sample's RMS over its ``n_state`` position
    coordinates, or the worst absolute (scaled) error in any extra column, whichever is larger.

    torchdiffeq passes the error already divided by ``atol + rtol * |y|``, so a value <= 1
    means every sample is within tolerance."""
    def norm(scaled_error: torch.Tensor) -> torch.Tensor:
        worst = scaled_error[:, :n_state].pow(2).mean(dim=1).sqrt().amax()
        if scaled_error.shape[1] > n_state:
            worst = torch.maximum(worst, scaled_error[:, n_state:].abs().amax())
        return worst
    return norm


def _standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return -0.5 * x.pow(2).sum(dim=1) - 0.5 * x.shape[1] * math.log(2 * math.pi)


def _dtype_and_device(model: nn.Module, fallback: torch.Tensor) -> tuple[torch.dtype, torch.device]:
    """Dtype and device of the model's first floating parameter or buffer, else the fallback's."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return fallback.dtype, fallback.device


def _working_copy(model: nn.Module, dtype: torch.dtype) -> tuple[nn.Module, torch.device]:
    """A frozen copy of ``model`` in ``dtype`` (so the caller's model is never touched) and its
    device."""
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    model_copy = copy.deepcopy(model).to(dtype).requires_grad_(False)
    _, device = _dtype_and_device(model_copy, torch.empty(0))
    return model_copy, device


def _check_points(x, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must have shape (N, d), got {got}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _record(stats: dict | None, per_batch: list[int], start: float) -> None:
    if stats is not None:
        stats.update(nfe=int(sum(per_batch)), nfe_per_batch=list(per_batch),
                     seconds=time.perf_counter() - start)
