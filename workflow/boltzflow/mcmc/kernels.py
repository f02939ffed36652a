"""MCMC kernels on batches of independent chains, shared by flowMC-EBM and the SGDS searchers.

Local kernels (ULA, MALA) and global ones with a flow proposal (IMH, i-SIR), composed by
:class:`GlobalLocal`, plus annealed importance sampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

__all__ = ["CountingLogProb", "ChainState", "init_state", "ula_step", "mala_step", "MALA", "ULA", "Proposal",
           "imh_step", "isir_step", "GlobalLocal", "SamplerRun",
           "AISResult", "annealed_importance_sampling"]

LogProb = Callable[[torch.Tensor], torch.Tensor]


class CountingLogProb:
    """Wraps ``log_prob`` and counts the rows it evaluates (``calls``): a ``(B, d)`` call adds ``B``."""

    def __init__(self, log_prob: LogProb):
        self.log_prob = log_prob
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += int(x.shape[0])
        return self.log_prob(x)


@dataclass
class ChainState:
    """Points ``x`` ``(B, d)``, their ``log_prob`` ``(B,)`` and its gradient ``(B, d)`` (or None), detached."""

    x: torch.Tensor
    log_prob: torch.Tensor
    grad: torch.Tensor | None


def _check_points(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"chains must be a (B, d) tensor, got {getattr(x, 'shape', type(x))}")


def _evaluate(x: torch.Tensor, log_prob: LogProb, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``log_prob(x)`` in x's dtype (and its gradient w.r.t. x), detached; checks the shape."""
    if with_grad:
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            lp = log_prob(xg)
            if lp.shape != (len(x),):
                raise ValueError(f"log_prob returned shape {tuple(lp.shape)}, expected ({len(x)},)")
            (grad,) = torch.autograd.grad(lp.sum(), xg)
        return lp.detach().to(x.dtype), grad.detach().to(x.dtype)
    with torch.no_grad():
        lp = log_prob(x)
    if lp.shape != (len(x),):
        raise ValueError(f"log_prob returned shape {tuple(lp.shape)}, expected ({len(x)},)")
    return lp.detach().to(x.dtype), None


def init_state(x: torch.Tensor, log_prob: LogProb, with_grad: bool = True) -> ChainState:
    """The :class:`ChainState` of points ``x``."""
    _check_points(x)
    lp, grad = _evaluate(x, log_prob, with_grad)
    return ChainState(x.detach(), lp, grad)


def _ensure_grad(state: ChainState, log_prob: LogProb) -> ChainState:
    return state if state.grad is not None else init_state(state.x, log_prob, True)


def _finite_rows(lp: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    ok = torch.isfinite(lp)
    if grad is not None:
        ok = ok & torch.isfinite(grad).all(dim=1)
    return ok


def _step_column(step_size: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    h = torch.as_tensor(step_size, dtype=x.dtype, device=x.device)
    if h.ndim == 0:
        h = h.expand(len(x))
    if h.shape != (len(x),) or not bool((h > 0).all()):
        raise ValueError(f"step_size must be a positive scalar or a ({len(x)},) tensor, got {tuple(h.shape)}")
    return h[:, None]


def ula_step(state: ChainState, log_prob: LogProb, step_size: float, generator: torch.Generator | None = None) -> ChainState:
    """One unadjusted Langevin step (rows whose new point is not finite stay where they were)."""
    state = _ensure_grad(state, log_prob)
    h = _step_column(step_size, state.x)
    noise = torch.randn(state.x.shape, generator=generator, dtype=state.x.dtype, device=state.x.device)
    x_new = state.x + h * state.grad + torch.sqrt(2.0 * h) * noise
    lp, grad = _evaluate(x_new, log_prob, True)
    ok = _finite_rows(lp, grad) & torch.isfinite(x_new).all(dim=1)
    return ChainState(torch.where(ok[:, None], x_new, state.x), torch.where(ok, lp, state.log_prob),
                      torch.where(ok[:, None], grad, state.grad))


def mala_step(state: ChainState, log_prob: LogProb, step_size: float | torch.Tensor,
              generator: torch.Generator | None = None) -> tuple[ChainState, torch.Tensor]:
    """One Metropolis-adjusted Langevin step; returns the new state and the accepted rows ``(B,)``."""
    state = _ensure_grad(state, log_prob)
    x, g = state.x, state.grad
    h = _step_column(step_size, x)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    y = x + h * g + torch.sqrt(2.0 * h) * noise
    lp_y, g_y = _evaluate(y, log_prob, True)
    ok = _finite_rows(lp_y, g_y)
    g_y = torch.where(ok[:, None], g_y, torch.zeros_like(g_y))
    h64 = h.squeeze(1).to(torch.float64)
    log_fwd = -((y - x - h * g).to(torch.float64).square().sum(1)) / (4.0 * h64)
    log_bwd = -((x - y - h * g_y).to(torch.float64).square().sum(1)) / (4.0 * h64)
    log_ratio = lp_y.to(torch.float64) - state.log_prob.to(torch.float64) + log_bwd - log_fwd
    u = torch.rand(len(x), generator=generator, dtype=torch.float64, device=x.device)
    accept = ok & (torch.log(u) < log_ratio)
    new = ChainState(torch.where(accept[:, None], y, x), torch.where(accept, lp_y, state.log_prob),
                     torch.where(accept[:, None], g_y, g))
    return new, accept


class MALA:
    """MALA with one step size for all chains, adapted after each step toward ``target_acceptance``:
    multiplied by ``adapt_factor`` when the batch acceptance exceeds the target by more than
    ``tolerance``, divided by it when it falls short by more, and kept in ``[min_step, max_step]``."""

    def __init__(self, step_size: float, target_acceptance: float = 0.574, adapt: bool = True,
                 adapt_factor: float = 1.05, tolerance: float = 0.03, min_step: float = 1e-8, max_step: float = 10.0):
        if not (step_size > 0 and 0 < target_acceptance < 1 and adapt_factor > 1 and 0 < min_step <= max_step):
            raise ValueError("MALA needs step_size > 0, 0 < target_acceptance < 1, adapt_factor > 1, "
                             "0 < min_step <= max_step")
        self.step_size = float(step_size)
        self.target_acceptance = float(target_acceptance)
        self.adapt = bool(adapt)
        self.adapt_factor = float(adapt_factor)
        self.tolerance = float(tolerance)
        self.min_step, self.max_step = float(min_step), float(max_step)

    def step(self, state: ChainState, log_prob: LogProb,
             generator: torch.Generator | None = None) -> tuple[ChainState, torch.Tensor]:
        state, accepted = mala_step(state, log_prob, self.step_size, generator)
        if self.adapt:
            rate = float(accepted.to(torch.float64).mean())
            if rate > self.target_acceptance + self.tolerance:
                self.step_size *= self.adapt_factor
            elif rate < self.target_acceptance - self.tolerance:
                self.step_size /= self.adapt_factor
            self.step_size = min(max(self.step_size, self.min_step), self.max_step)
        return state, accepted

    def state_dict(self) -> dict:
        return {"step_size": self.step_size, "target_acceptance": self.target_acceptance, "adapt": self.adapt}

    def load_state_dict(self, state: dict) -> None:
        self.step_size = float(state["step_size"])


class ULA:
    """Unadjusted Langevin with a fixed step size (every step counts as accepted)."""

    def __init__(self, step_size: float):
        if not step_size > 0:
            raise ValueError(f"ULA step_size must be > 0, got {step_size}")
        self.step_size = float(step_size)

    def step(self, state: ChainState, log_prob: LogProb,
             generator: torch.Generator | None = None) -> tuple[ChainState, torch.Tensor]:
        new = ula_step(state, log_prob, self.step_size, generator)
        return new, torch.ones(len(new.x), dtype=torch.bool, device=new.x.device)

    def state_dict(self) -> dict:
        return {"step_size": self.step_size}

    def load_state_dict(self, state: dict) -> None:
        self.step_size = float(state["step_size"])


class Proposal(Protocol):
    """A density to draw global moves from (a :class:`boltzflow.flows.Flow` is one)."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]: ...

    def log_prob(self, x: torch.Tensor) -> torch.Tensor: ...


def _propose(proposal: Proposal, n: int, like: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        y, log_q = proposal.sample(n, generator=generator)
    return y.detach().to(like.dtype), log_q.detach().to(torch.float64)


def _current_log_q(proposal: Proposal, x: torch.Tensor, log_q_current: torch.Tensor | None) -> torch.Tensor:
    if log_q_current is not None:
        return log_q_current.to(torch.float64)
    with torch.no_grad():
        return proposal.log_prob(x).detach().to(torch.float64)


def _regrad(state: ChainState, x_new: torch.Tensor, lp_new: torch.Tensor, moved: torch.Tensor,
            log_prob: LogProb) -> tuple[ChainState, torch.Tensor]:
    grad = state.grad
    if grad is not None and bool(moved.any()):
        _, g_moved = _evaluate(x_new[moved], log_prob, True)
        good = torch.isfinite(g_moved).all(dim=1)
        rows = moved.nonzero().squeeze(1)
        moved = moved.clone()
        moved[rows[~good]] = False  # never carry a NaN gradient into the local kernel
        grad = grad.clone()
        grad[rows[good]] = g_moved[good]
    x = torch.where(moved[:, None], x_new, state.x)
    lp = torch.where(moved, lp_new, state.log_prob)
    return ChainState(x, lp, grad), moved


def imh_step(state: ChainState, log_prob: LogProb, proposal: Proposal, generator: torch.Generator | None = None,
             log_q_current: torch.Tensor | None = None) -> tuple[ChainState, torch.Tensor, torch.Tensor]:
    """One independent Metropolis-Hastings step with proposal ``q``; returns the new state, the
    accepted rows and ``log q`` of the new points."""
    x = state.x
    lq_x = _current_log_q(proposal, x, log_q_current)
    y, lq_y = _propose(proposal, len(x), x, generator)
    lp_y, _ = _evaluate(y, log_prob, False)
    lw_x = state.log_prob.to(torch.float64) - lq_x
    lw_x = torch.where(torch.isnan(lw_x), torch.full_like(lw_x, -math.inf), lw_x)  # undefined: weight 0
    lw_y = lp_y.to(torch.float64) - lq_y
    finite_y = torch.isfinite(lw_y)
    u = torch.rand(len(x), generator=generator, dtype=torch.float64, device=x.device)
    log_ratio = torch.where(finite_y, lw_y - lw_x, torch.full_like(lw_y, -math.inf))
    accept = finite_y & (torch.isneginf(lw_x) | (torch.log(u) < log_ratio))
    new, accept = _regrad(state, y, lp_y, accept, log_prob)
    return new, accept, torch.where(accept, lq_y, lq_x)


def isir_step(state: ChainState, log_prob: LogProb, proposal: Proposal, n_particles: int,
              generator: torch.Generator | None = None,
              log_q_current: torch.Tensor | None = None) -> tuple[ChainState, torch.Tensor, torch.Tensor]:
    """One i-SIR step with ``n_particles - 1`` proposals per chain; "accepted" means a proposal was
    chosen over the current point. Returns the new state, the accepted rows and ``log q`` of the new points."""
    if n_particles < 2:
        raise ValueError(f"i-SIR needs n_particles >= 2, got {n_particles}")
    x = state.x
    b, d = x.shape
    k = n_particles - 1
    lq_x = _current_log_q(proposal, x, log_q_current)
    y, lq_y = _propose(proposal, b * k, x, generator)
    lp_y, _ = _evaluate(y, log_prob, False)
    lw_y = lp_y.to(torch.float64) - lq_y
    lw_y = torch.where(torch.isfinite(lw_y), lw_y, torch.full_like(lw_y, -math.inf))
    lw_x = state.log_prob.to(torch.float64) - lq_x
    lw_x = torch.where(torch.isnan(lw_x), torch.full_like(lw_x, -math.inf), lw_x)  # undefined: weight 0
    log_w = torch.cat([lw_x[:, None], lw_y.view(b, k)], dim=1)
    # Categorical draw by the Gumbel-max trick in float64; proposals of weight 0 are never chosen, a
    # current point of weight 0 (or undefined) is always left when a proposal has weight > 0
    u = torch.rand(log_w.shape, generator=generator, dtype=torch.float64, device=x.device)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
    keys = torch.where(torch.isneginf(log_w), torch.full_like(log_w, -math.inf), log_w + gumbel)
    keys[:, 0] = torch.where(torch.isposinf(lw_x), torch.full_like(lw_x, math.inf), keys[:, 0])
    choice = keys.argmax(dim=1)
    accept = choice != 0
    rows = torch.arange(b, device=x.device)
    pick = (rows * k + (choice - 1).clamp_min(0))
    x_new, lp_new, lq_new = y.view(b * k, d)[pick], lp_y[pick], lq_y[pick]
    new, accept = _regrad(state, x_new, lp_new, accept, log_prob)
    return new, accept, torch.where(accept, lq_new, lq_x)


@dataclass
class SamplerRun:
    """What :meth:`GlobalLocal.run` returns."""

    x: torch.Tensor
    states: torch.Tensor | None
    global_acceptance: float
    local_acceptance: float
    n_steps: int
    log_prob: torch.Tensor | None = None  # log_prob at the final points x (already evaluated by the chains)


class GlobalLocal:
    """Cycles of ``n_global`` global (flow) steps followed by ``n_local`` local steps.

    ``local`` is a :class:`MALA` or :class:`ULA`; with ``proposal=None`` or ``global_kind="none"``
    only local steps are taken.

    Every kernel advances ``B`` chains ``x`` of shape ``(B, d)`` (float32 or float64, any device)
    targeting ``pi(x) ∝ exp(log_prob(x))``, where ``log_prob`` maps ``(B, d) -> (B,)`` and is
    differentiable by autograd (it may be a neural network: gradients are taken with respect to ``x``
    only, so nothing accumulates on the network's parameters).

    Local kernels (gradient-based; they carry a :class:`ChainState` with the log-density and its
    gradient at the current points, so one step costs one evaluation):

    - ULA, ``x' = x + h grad log pi(x) + sqrt(2h) xi``, no correction (biased for finite ``h``);
    - MALA, the same proposal ``N(x + h grad, 2h I)`` with the Metropolis-Hastings correction for
      its asymmetric density ``log q(x'|x) = -|x' - x - h grad(x)|^2 / (4h)``; :class:`MALA` adapts
      ``h`` toward a target acceptance rate (0.574 is optimal for smooth targets in high dimension).

    Global kernels with a proposal density ``q`` (a normalizing flow: ``sample(n)`` returns points
    and their exact ``log q``, ``log_prob(x)`` scores points):

    - independent Metropolis-Hastings (IMH), accept ``x' ~ q`` with ``min(1, pi(x') q(x) / (pi(x) q(x')))``;
    - i-SIR (Andrieu et al. 2010; Samsonov et al. 2022), ``N - 1`` proposals plus the current point,
      one of them resampled with probability proportional to ``pi / q``. Both leave ``pi`` invariant
      whatever ``q`` is; a good ``q`` lets chains jump between modes.

    :class:`GlobalLocal` interleaves them (``n_global`` global steps, then ``n_local`` local steps,
    per cycle) and reports acceptance rates. Rows whose proposal has a non-finite log-density or
    gradient are rejected, so a NaN never enters a chain. Randomness comes only from the optional
    ``torch.Generator``; log-density comparisons are done in float64.
    """

    def __init__(self, local: MALA | ULA, proposal: Proposal | None = None, global_kind: str = "isir",
                 n_particles: int = 64, n_global: int = 1, n_local: int = 24):
        if global_kind not in ("isir", "imh", "none"):
            raise ValueError(f"global_kind must be isir, imh or none, got {global_kind!r}")
        self.local = local
        self.proposal = proposal if global_kind != "none" else None
        self.global_kind = global_kind if proposal is not None else "none"
        self.n_particles = int(n_particles)
        self.n_global = int(n_global) if self.proposal is not None else 0
        self.n_local = int(n_local)
        if self.n_global + self.n_local < 1 or self.n_local < 0:
            raise ValueError("a cycle needs at least one step")

    def run(self, x: torch.Tensor, log_prob: LogProb, n_cycles: int, generator: torch.Generator | None = None,
            keep: str = "last", keep_every: int = 1) -> SamplerRun:
        """Advance chains ``x`` by ``n_cycles`` cycles; ``keep="all"`` also returns the states after
        every ``keep_every``-th step, ``(ceil(n_cycles * (n_global + n_local) / keep_every), B, d)``."""
        _check_points(x)
        if keep not in ("last", "all"):
            raise ValueError(f"keep must be last or all, got {keep!r}")
        if keep_every < 1:
            raise ValueError(f"keep_every must be >= 1, got {keep_every}")
        step = 0
        state = init_state(x, log_prob, with_grad=self.n_local > 0)
        states: list[torch.Tensor] = []
        g_acc, g_n, l_acc, l_n = 0.0, 0, 0.0, 0
        log_q = None
        for _ in range(int(n_cycles)):
            for _ in range(self.n_global):
                if self.global_kind == "isir":
                    state, accepted, log_q = isir_step(state, log_prob, self.proposal, self.n_particles, generator, log_q)
                else:
                    state, accepted, log_q = imh_step(state, log_prob, self.proposal, generator, log_q)
                g_acc += float(accepted.to(torch.float64).sum())
                g_n += len(accepted)
                if keep == "all" and step % keep_every == 0:
                    states.append(state.x)
                step += 1
            for _ in range(self.n_local):
                state, accepted = self.local.step(state, log_prob, generator)
                log_q = None if bool(accepted.any()) else log_q
                l_acc += float(accepted.to(torch.float64).sum())
                l_n += len(accepted)
                if keep == "all" and step % keep_every == 0:
                    states.append(state.x)
                step += 1
        return SamplerRun(state.x, torch.stack(states) if keep == "all" and states else None,
                          g_acc / g_n if g_n else float("nan"), l_acc / l_n if l_n else float("nan"),
                          int(n_cycles) * (self.n_global + self.n_local), state.log_prob)


@dataclass
class AISResult:
    """Final states ``x`` ``(B, d)`` of annealed importance sampling, their log-weights ``(B,)``
    (float64), the estimate ``log_z`` (log-mean-exp of the weights), the final target log-density
    ``log_target`` at ``x`` ``(B,)`` and the mean MALA acceptance over the annealing steps."""

    x: torch.Tensor
    log_weights: torch.Tensor
    log_z: float
    log_target: torch.Tensor
    acceptance: float


def annealed_importance_sampling(log_target: LogProb, x0: torch.Tensor, prior_std: float, n_steps: int,
                                 step_size: float, generator: torch.Generator | None = None,
                                 target_acceptance: float = 0.574, adapt_factor: float = 1.1) -> AISResult:
    """Annealed importance sampling (Neal 2001) from ``N(0, prior_std^2 I)`` to the unnormalised
    ``exp(log_target)`` along ``pi_b ∝ prior^(1 - b) target^b`` with ``b_k = k / n_steps``.

    ``x0`` ``(B, d)`` are exact prior draws. At annealing step ``k`` every chain adds
    ``(b_k - b_{k-1}) (log_target(x) - log prior(x))`` to its log-weight, then takes one MALA step
    that leaves ``pi_{b_k}`` invariant, so ``E[exp(log w)] = Z`` for any step sizes fixed in
    advance (``adapt_factor = 1``). Otherwise the shared step size is multiplied (divided) by
    ``adapt_factor`` after a step whose batch acceptance is above (below) ``target_acceptance``;
    it then depends on the batch's past, a dependence that fades with the number of chains. Each step costs one evaluation
    of ``log_target`` and its gradient per chain (``n_steps + 1`` in all)."""
    _check_points(x0)
    if not (n_steps >= 1 and prior_std > 0 and step_size > 0 and adapt_factor >= 1):
        raise ValueError("AIS needs n_steps >= 1, prior_std > 0, step_size > 0 and adapt_factor >= 1")
    d = x0.shape[1]
    var = float(prior_std) ** 2

    def log_prior(x: torch.Tensor) -> torch.Tensor:
        return -0.5 * x.to(torch.float64).square().sum(1) / var - 0.5 * d * math.log(2.0 * math.pi * var)

    x = x0.detach()
    lt, gt = _evaluate(x, log_target, True)
    log_w = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    h, accepted_total = float(step_size), 0.0
    for k in range(1, n_steps + 1):
        b_prev, b = (k - 1) / n_steps, k / n_steps
        finite = torch.isfinite(lt)
        log_w = log_w + (b - b_prev) * torch.where(finite, lt.to(torch.float64) - log_prior(x),
                                                   torch.full_like(log_w, -math.inf))

        def log_pi(y: torch.Tensor, lt_y: torch.Tensor) -> torch.Tensor:
            return (1.0 - b) * log_prior(y) + b * lt_y.to(torch.float64)

        def grad_pi(y: torch.Tensor, gt_y: torch.Tensor) -> torch.Tensor:
            return (1.0 - b) * (-y / var) + b * gt_y

        g = grad_pi(x, torch.where(torch.isfinite(gt), gt, torch.zeros_like(gt)))
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        y = x + h * g + math.sqrt(2.0 * h) * noise
        lt_y, gt_y = _evaluate(y, log_target, True)
        ok = _finite_rows(lt_y, gt_y)
        gt_y = torch.where(ok[:, None], gt_y, torch.zeros_like(gt_y))
        g_y = grad_pi(y, gt_y)
        log_fwd = -(y - x - h * g).to(torch.float64).square().sum(1) / (4.0 * h)
        log_bwd = -(x - y - h * g_y).to(torch.float64).square().sum(1) / (4.0 * h)
        log_ratio = log_pi(y, lt_y) - log_pi(x, lt) + log_bwd - log_fwd
        u = torch.rand(len(x), generator=generator, dtype=torch.float64, device=x.device)
        accept = ok & (torch.log(u) < log_ratio)
        x = torch.where(accept[:, None], y, x)
        lt = torch.where(accept, lt_y, lt)
        gt = torch.where(accept[:, None], gt_y, gt)
        rate = float(accept.to(torch.float64).mean())
        accepted_total += rate
        h = h * adapt_factor if rate > target_acceptance else h / adapt_factor
    log_z = float(torch.logsumexp(log_w, 0) - math.log(len(log_w)))
    return AISResult(x.detach(), log_w, log_z, lt.detach().to(torch.float64), accepted_total / n_steps)
