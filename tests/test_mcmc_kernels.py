"""MCMC kernels (boltzflow.mcmc), detailed checks beside tests/test_mcmc.py: a hand-computed MALA step,
exact bookkeeping of log pi, gradients and log q after global moves, and invariance per kernel.

Target: pi = 0.3 N((-2, 0), 0.5^2 I) + 0.7 N((2, 0.5), 0.5^2 I). The invariance tests start many
independent chains from exact draws of pi, apply a few kernel steps and check that the chains are
still distributed as pi; negative controls show the same check rejects a broken kernel.
"""

import math

import pytest
import torch
from boltzflow.mcmc import (
    MALA,
    ULA,
    ChainState,
    CountingLogProb,
    GlobalLocal,
    SamplerRun,
    imh_step,
    init_state,
    isir_step,
    mala_step,
    ula_step,
)

WEIGHTS = (0.3, 0.7)
MEANS = ((-2.0, 0.0), (2.0, 0.5))
SIGMA = 0.5
N_CHAINS = 4000
Z = 4.5  # tolerance in standard errors: a correct kernel fails one check with probability ~7e-6


def mixture_log_prob(x: torch.Tensor) -> torch.Tensor:
    """Exact normalised log density of the mixture, computed in float64 (differentiable in x)."""
    x64 = x.to(torch.float64)
    mu = torch.tensor(MEANS, dtype=torch.float64, device=x.device)
    sq = (x64[:, None, :] - mu).square().sum(-1)  # (B, 2)
    log_w = torch.log(torch.tensor(WEIGHTS, dtype=torch.float64, device=x.device))
    return torch.logsumexp(log_w - sq / (2 * SIGMA**2) - math.log(2 * math.pi * SIGMA**2), dim=1)


def mixture_sample(n: int, generator: torch.Generator, component: int | None = None) -> torch.Tensor:
    """Exact float64 draws of the mixture (or of one component)."""
    if component is None:
        comp = (torch.rand(n, generator=generator, dtype=torch.float64) >= WEIGHTS[0]).long()
    else:
        comp = torch.full((n,), component, dtype=torch.long)
    mu = torch.tensor(MEANS, dtype=torch.float64)[comp]
    return mu + SIGMA * torch.randn(n, 2, generator=generator, dtype=torch.float64)


def _component_moments(m: float) -> tuple[float, float, float]:
    """E[y], E[y^2], E[y^4] of N(m, SIGMA^2)."""
    s2 = SIGMA**2
    return m, m * m + s2, m**4 + 6 * m * m * s2 + 3 * s2 * s2


def exact_statistics() -> dict[str, tuple[float, float]]:
    """Exact value of each checked statistic and its per-sample standard deviation."""
    out = {}
    for i in range(2):
        e1 = sum(w * _component_moments(mu[i])[0] for w, mu in zip(WEIGHTS, MEANS))
        e2 = sum(w * _component_moments(mu[i])[1] for w, mu in zip(WEIGHTS, MEANS))
        e4 = sum(w * _component_moments(mu[i])[2] for w, mu in zip(WEIGHTS, MEANS))
        out[f"mean x{i}"] = (e1, math.sqrt(e2 - e1 * e1))
        out[f"E x{i}^2"] = (e2, math.sqrt(e4 - e2 * e2))
    # P(x0 > 0): each component's Gaussian tail, weighted
    p = sum(w * 0.5 * math.erfc(-mu[0] / (SIGMA * math.sqrt(2))) for w, mu in zip(WEIGHTS, MEANS))
    out["right weight"] = (p, math.sqrt(p * (1 - p)))
    return out


EXACT = exact_statistics()


def distribution_failures(x: torch.Tensor) -> list[str]:
    """Checked statistics of chains ``x`` that are more than ``Z`` standard errors (computed from the
    exact values and the number of chains) away from the exact values; empty if all agree."""
    x = x.to(torch.float64)
    n = x.shape[0]
    observed = {"mean x0": x[:, 0].mean(), "mean x1": x[:, 1].mean(), "E x0^2": x[:, 0].square().mean(),
                "E x1^2": x[:, 1].square().mean(), "right weight": (x[:, 0] > 0).double().mean()}
    failures = []
    for name, (exact, sd) in EXACT.items():
        value, tol = float(observed[name]), Z * sd / math.sqrt(n)
        if not abs(value - exact) <= tol:
            failures.append(f"{name}: {value:.4f} vs exact {exact:.4f} (tolerance {tol:.4f})")
    return failures


class BroadGaussian:
    """Exact proposal N((shift, 0), scale^2 I_2) (by default N(0, 9 I), deliberately not the target);
    ``tilt`` corrupts the reported log q by ``tilt * x0`` (a non-constant error) for negative controls."""

    def __init__(self, scale: float = 3.0, tilt: float = 0.0, shift: float = 0.0):
        self.scale, self.tilt, self.shift = scale, tilt, shift

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        x64 = x.to(torch.float64)
        z = (x64 - torch.tensor([self.shift, 0.0], dtype=torch.float64)) / self.scale
        exact = -0.5 * z.square().sum(1) - 2 * math.log(self.scale) - math.log(2 * math.pi)
        return exact + self.tilt * x64[:, 0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.scale * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        x = x + torch.tensor([self.shift, 0.0], dtype=torch.float64)
        return x, self.log_prob(x)


class ExactMixture:
    """The target itself as a proposal (q = pi)."""

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = mixture_sample(n, generator)
        return x, mixture_log_prob(x)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(x)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def run_kernel(kind: str, x0: torch.Tensor, n_steps: int, generator: torch.Generator, proposal=None) -> torch.Tensor:
    """Final chains after ``n_steps`` of the named kernel started at ``x0`` (cycles for GlobalLocal)."""
    proposal = proposal if proposal is not None else BroadGaussian()
    if kind == "global_local":
        sampler = GlobalLocal(MALA(0.1, adapt=False), proposal, "isir", n_particles=8, n_global=1, n_local=3)
        return sampler.run(x0, mixture_log_prob, n_steps, generator=generator).x
    state = init_state(x0, mixture_log_prob, with_grad=kind.startswith(("mala", "ula")))
    log_q = None
    per_chain = 0.02 + 0.18 * torch.rand(x0.shape[0], generator=gen(99), dtype=torch.float64)
    for _ in range(n_steps):
        if kind == "mala":
            state, _ = mala_step(state, mixture_log_prob, 0.1, generator=generator)
        elif kind == "mala_per_chain":
            state, _ = mala_step(state, mixture_log_prob, per_chain, generator=generator)
        elif kind == "ula":
            state = ula_step(state, mixture_log_prob, 0.1, generator=generator)
        elif kind == "isir":
            state, _, log_q = isir_step(state, mixture_log_prob, proposal, 8, generator=generator, log_q_current=log_q)
        elif kind == "imh":
            state, _, log_q = imh_step(state, mixture_log_prob, proposal, generator=generator, log_q_current=log_q)
        else:
            raise AssertionError(kind)
    return state.x


# ----------------------------------------------------------------------------- 1. invariance


def test_exact_samples_pass_the_distribution_check():
    assert distribution_failures(mixture_sample(N_CHAINS, gen(0))) == []


@pytest.mark.parametrize("kind, n_steps", [("mala", 10), ("mala_per_chain", 10), ("isir", 6), ("imh", 25),
                                           ("global_local", 3)])
def test_kernels_leave_the_target_invariant(kind, n_steps):
    x0 = mixture_sample(N_CHAINS, gen(1))
    x = run_kernel(kind, x0, n_steps, gen(2))
    assert x.shape == x0.shape and torch.isfinite(x).all()
    moved = (x != x0).any(1).double().mean()
    assert moved > 0.6, f"{kind} barely moved the chains ({moved:.2f}): the invariance check would be vacuous"
    assert distribution_failures(x) == []


def test_negative_control_ula_without_the_mh_correction_fails_the_check():
    # the same proposal and step as the MALA invariance test, minus the accept/reject: ULA inflates
    # each mode's variance (0.25 -> ~0.31 at h = 0.1), far beyond the tolerance on E[x1^2]
    x = run_kernel("ula", mixture_sample(N_CHAINS, gen(1)), 10, gen(2))
    failures = distribution_failures(x)
    assert any(f.startswith("E x1^2") for f in failures), failures


def test_negative_control_isir_with_a_wrongly_weighted_proposal_fails_the_check():
    # reported log q off by 0.5 * x0: i-SIR then targets pi * exp(-0.5 x0), right weight ~0.24
    x = run_kernel("isir", mixture_sample(N_CHAINS, gen(1)), 6, gen(2), proposal=BroadGaussian(tilt=0.5))
    failures = distribution_failures(x)
    assert any(f.startswith("right weight") for f in failures), failures


def test_negative_control_imh_with_a_wrongly_weighted_proposal_fails_the_check():
    x = run_kernel("imh", mixture_sample(N_CHAINS, gen(1)), 25, gen(2), proposal=BroadGaussian(tilt=0.5))
    assert any(f.startswith("right weight") for f in distribution_failures(x))


def test_mala_acceptance_follows_the_asymmetric_proposal_density():
    # reproduce one step by hand: noise first (randn like x), then one float64 uniform per chain
    x = mixture_sample(500, gen(3))
    h = 0.3
    state = init_state(x, mixture_log_prob)
    new, accepted = mala_step(state, mixture_log_prob, h, generator=gen(4))
    g = gen(4)
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    log_u = torch.rand(500, generator=g, dtype=torch.float64).log()
    y = x + h * state.grad + math.sqrt(2 * h) * noise
    y_state = init_state(y, mixture_log_prob)
    log_fwd = -(y - x - h * state.grad).square().sum(1) / (4 * h)
    log_rev = -(x - y - h * y_state.grad).square().sum(1) / (4 * h)
    log_alpha = y_state.log_prob - state.log_prob + log_rev - log_fwd
    assert torch.equal(accepted, log_u < log_alpha)
    assert 0.2 < accepted.double().mean() < 0.95
    torch.testing.assert_close(new.x, torch.where(accepted[:, None], y, x))


# ----------------------------------------------------------------------------- 2. mixing


def test_global_kernels_mix_between_modes_and_mala_alone_does_not():
    left = mixture_sample(2000, gen(5), component=0)
    p, tol = EXACT["right weight"][0], 0.05
    isir = GlobalLocal(MALA(0.1, adapt=False), BroadGaussian(), "isir", n_particles=8, n_global=1, n_local=0)
    right = (isir.run(left, mixture_log_prob, 20, generator=gen(6)).x[:, 0] > 0).double().mean()
    assert abs(right - p) < tol, f"i-SIR right weight {right:.3f}"
    both = GlobalLocal(MALA(0.1, adapt=False), BroadGaussian(), "isir", n_particles=8, n_global=1, n_local=2)
    right = (both.run(left, mixture_log_prob, 15, generator=gen(6)).x[:, 0] > 0).double().mean()
    assert abs(right - p) < tol, f"GlobalLocal right weight {right:.3f}"
    local = GlobalLocal(MALA(0.05, adapt=False), None, n_local=50)
    run = local.run(left, mixture_log_prob, 2, generator=gen(6))
    assert (run.x[:, 0] > 0).double().mean() < 0.05 and run.local_acceptance > 0.5


# ----------------------------------------------------------------------------- 3. MALA adaptation


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * x.square().sum(1)


@pytest.mark.parametrize("initial_step", [0.01, 8.0])
def test_mala_adapts_its_step_toward_the_target_acceptance(initial_step):
    kernel = MALA(initial_step, target_acceptance=0.574)
    g = gen(7)
    state = init_state(torch.randn(1000, 2, generator=g, dtype=torch.float64), standard_normal_log_prob)
    rates = []
    for _ in range(300):
        state, accepted = kernel.step(state, standard_normal_log_prob, generator=g)
        rates.append(float(accepted.double().mean()))
    assert abs(sum(rates[-100:]) / 100 - 0.574) < 0.1
    assert kernel.min_step <= kernel.step_size <= kernel.max_step and kernel.step_size != initial_step


def test_mala_without_adaptation_keeps_its_step_and_state_dict_round_trips():
    frozen = MALA(0.3, adapt=False)
    state = init_state(torch.zeros(50, 2, dtype=torch.float64), standard_normal_log_prob)
    for _ in range(5):
        state, _ = frozen.step(state, standard_normal_log_prob, generator=gen(8))
    assert frozen.step_size == 0.3
    adaptive = MALA(1e-3)
    adaptive.step(state, standard_normal_log_prob, generator=gen(8))  # acceptance ~1 -> step grows
    assert adaptive.step_size == pytest.approx(1.05e-3)
    saved = adaptive.state_dict()
    assert all(isinstance(v, (float, bool)) for v in saved.values())
    restored = MALA(0.5)
    restored.load_state_dict(saved)
    assert restored.step_size == adaptive.step_size
    ula = ULA(0.2)
    other = ULA(0.7)
    other.load_state_dict(ula.state_dict())
    assert other.step_size == 0.2


# ----------------------------------------------------------------------------- 4. acceptance records


def test_acceptance_rates_with_an_exact_proposal():
    x = mixture_sample(N_CHAINS, gen(9))
    state = init_state(x, mixture_log_prob, with_grad=False)
    # q = pi: every IMH proposal has the current point's weight, so (up to rounding) all accept
    _, accepted, _ = imh_step(state, mixture_log_prob, ExactMixture(), generator=gen(10))
    assert accepted.double().mean() > 0.99
    # q = pi: i-SIR's n - 1 fresh draws and the current point weigh the same -> P(move) = 7/8
    _, accepted, _ = isir_step(state, mixture_log_prob, ExactMixture(), 8, generator=gen(10))
    p = 7 / 8
    assert abs(accepted.double().mean() - p) < Z * math.sqrt(p * (1 - p) / N_CHAINS)


def test_isir_and_imh_never_move_to_zero_density_proposals():
    def log_prob(x):  # the mixture, but zero density for x0 > 10
        return torch.where(x[:, 0] > 10, torch.full_like(x[:, 0], -math.inf, dtype=torch.float64),
                           mixture_log_prob(x))

    far = BroadGaussian(scale=1.0, shift=20.0)  # all proposals land where pi = 0
    x = mixture_sample(300, gen(11))
    state = init_state(x, log_prob)
    new, accepted, log_q = isir_step(state, log_prob, far, 8, generator=gen(12))
    assert not accepted.any() and torch.equal(new.x, x) and torch.equal(new.grad, state.grad)
    torch.testing.assert_close(log_q, far.log_prob(x))
    new, accepted, _ = imh_step(state, log_prob, far, generator=gen(12))
    assert not accepted.any() and torch.equal(new.x, x)


@pytest.mark.parametrize("kind", ["isir", "imh"])
def test_global_steps_return_consistent_states_and_log_q(kind):
    state = init_state(mixture_sample(400, gen(13)), mixture_log_prob, with_grad=True)
    proposal = BroadGaussian()
    log_q = None
    for _ in range(3):
        if kind == "isir":
            state, accepted, log_q = isir_step(state, mixture_log_prob, proposal, 8, generator=gen(14),
                                               log_q_current=log_q)
        else:
            state, accepted, log_q = imh_step(state, mixture_log_prob, proposal, generator=gen(14),
                                              log_q_current=log_q)
        assert accepted.dtype == torch.bool and accepted.shape == (400,) and accepted.any()
    fresh = init_state(state.x, mixture_log_prob, with_grad=True)
    torch.testing.assert_close(state.log_prob, fresh.log_prob)
    torch.testing.assert_close(state.grad, fresh.grad)  # accepted rows carry the gradient at x'
    torch.testing.assert_close(log_q, proposal.log_prob(state.x))
    assert log_q.dtype == torch.float64


def test_global_local_reports_acceptances_and_keeps_every_state():
    x0 = mixture_sample(200, gen(15))
    sampler = GlobalLocal(MALA(0.1, adapt=False), BroadGaussian(), "imh", n_global=2, n_local=3)
    run = sampler.run(x0, mixture_log_prob, 4, generator=gen(16), keep="all")
    assert isinstance(run, SamplerRun) and run.n_steps == 4 * 5
    assert run.states.shape == (4 * 5, 200, 2)
    assert torch.equal(run.states[-1], run.x)
    assert 0 < run.global_acceptance < 1 and 0 < run.local_acceptance <= 1
    last = sampler.run(x0, mixture_log_prob, 4, generator=gen(16))
    assert last.states is None and torch.equal(last.x, run.x)
    local_only = GlobalLocal(ULA(0.05), None, n_local=3).run(x0, mixture_log_prob, 2, generator=gen(16), keep="all")
    assert local_only.states.shape == (6, 200, 2) and local_only.n_steps == 6
    assert math.isnan(local_only.global_acceptance) and local_only.local_acceptance == 1.0
    none_kind = GlobalLocal(MALA(0.1), BroadGaussian(), "none", n_local=2).run(x0, mixture_log_prob, 2, generator=gen(16))
    assert math.isnan(none_kind.global_acceptance) and none_kind.n_steps == 4
    thinned = sampler.run(x0, mixture_log_prob, 4, generator=gen(16), keep="all", keep_every=3)
    assert thinned.states.shape == (7, 200, 2)  # steps 0, 3, ..., 18 of 20
    assert torch.equal(thinned.states, run.states[::3]) and torch.equal(thinned.x, run.x)


class SpyProposal(BroadGaussian):
    """Records every batch of points its ``log_prob`` is asked about."""

    def __init__(self):
        super().__init__()
        self.asked: list[torch.Tensor] = []

    def log_prob(self, x):
        self.asked.append(x.detach().clone())
        return super().log_prob(x)

    def sample(self, n, generator=None):
        x = self.scale * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return x, super().log_prob(x)


@pytest.mark.parametrize("kind", ["isir", "imh"])
def test_global_local_rescores_log_q_after_local_moves(kind):
    # the global step's current weight pi(x)/q(x) must use q at the points the local steps reached,
    # not a log q carried over from before them
    x0 = mixture_sample(100, gen(17))
    spy = SpyProposal()
    run = GlobalLocal(MALA(0.1, adapt=False), spy, kind, n_particles=4, n_global=2, n_local=2).run(
        x0, mixture_log_prob, 3, generator=gen(18), keep="all")
    assert len(spy.asked) == 3  # once per cycle; consecutive global steps reuse the returned log q
    before_cycle = [x0, run.states[3], run.states[7]]
    for asked, expected in zip(spy.asked, before_cycle):
        torch.testing.assert_close(asked, expected)


# ----------------------------------------------------------------------------- 5. counting, bad values


def test_counting_log_prob_counts_rows():
    counted = CountingLogProb(mixture_log_prob)
    assert counted.calls == 0
    assert counted(torch.zeros(5, 2)).shape == (5,)
    counted(torch.zeros(3, 2))
    assert counted.calls == 8
    b, k = 40, 6
    counted.calls = 0
    state = init_state(mixture_sample(b, gen(17)), counted)
    assert counted.calls == b
    state, _ = mala_step(state, counted, 0.1, generator=gen(18))
    assert counted.calls == 2 * b  # one evaluation (with gradient) of the proposals
    plain = init_state(state.x, counted, with_grad=False)
    before = counted.calls
    isir_step(plain, counted, BroadGaussian(), k, generator=gen(19), log_q_current=BroadGaussian().log_prob(plain.x))
    assert counted.calls - before == b * (k - 1)  # no gradients wanted: the proposals only


class _NanGradientBeyond(torch.autograd.Function):
    """Zero in value everywhere; its gradient is NaN where x0 > bound."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        g = torch.zeros_like(x)
        g[x[:, 0] > ctx.bound] = math.nan
        return g * grad_out[:, None], None


def _bad_beyond(kind: str):
    """Standard normal log density inside the box |x_i| < 1, broken outside as ``kind`` says
    (for "nan gradient": finite everywhere, NaN gradient for x0 > 1)."""

    def log_prob(x):
        lp = -0.5 * x.square().sum(1)
        outside = (x.abs() >= 1).any(1)
        if kind == "nan gradient":
            return lp + _NanGradientBeyond.apply(x, 1.0)
        bad = torch.full_like(lp, -math.inf if kind == "-inf" else math.nan)
        return torch.where(outside, bad, lp)

    return log_prob


@pytest.mark.parametrize("kind", ["-inf", "nan", "nan gradient"])
def test_mala_rejects_proposals_with_non_finite_log_prob_or_gradient(kind):
    log_prob = _bad_beyond(kind)
    x = torch.full((500, 2), 0.8, dtype=torch.float64)
    state = init_state(x, log_prob)
    for step in range(5):
        new, accepted = mala_step(state, log_prob, 0.5, generator=gen(20 + step))
        assert torch.isfinite(new.x).all() and torch.isfinite(new.log_prob).all() and torch.isfinite(new.grad).all()
        assert torch.equal(new.x[~accepted], state.x[~accepted])  # rejected rows stay put
        assert 0 < accepted.double().mean() < 1
        bound = new.x[:, 0] if kind == "nan gradient" else new.x.abs().max(1).values
        assert (bound < 1).all()  # nobody accepted a broken proposal
        state = new


@pytest.mark.parametrize("kind", ["-inf", "nan"])
def test_global_kernels_ignore_proposals_with_non_finite_log_prob(kind):
    log_prob = _bad_beyond(kind)
    state = init_state(torch.full((500, 2), 0.5, dtype=torch.float64), log_prob, with_grad=False)
    for step_fn in (lambda s: isir_step(s, log_prob, BroadGaussian(), 8, generator=gen(30)),
                    lambda s: imh_step(s, log_prob, BroadGaussian(), generator=gen(30))):
        new, accepted, _ = step_fn(state)
        assert accepted.any()
        assert torch.isfinite(new.log_prob).all() and (new.x.abs() < 1).all()


# ----------------------------------------------------------------------------- 6. reproducibility


def test_same_seed_same_run_and_other_seed_other_run():
    x0 = mixture_sample(300, gen(40))
    sampler = GlobalLocal(MALA(0.2), BroadGaussian(), "isir", n_particles=8, n_global=1, n_local=3)
    a = sampler.run(x0, mixture_log_prob, 3, generator=gen(41), keep="all")
    sampler = GlobalLocal(MALA(0.2), BroadGaussian(), "isir", n_particles=8, n_global=1, n_local=3)
    b = sampler.run(x0, mixture_log_prob, 3, generator=gen(41), keep="all")
    assert torch.equal(a.states, b.states) and a.global_acceptance == b.global_acceptance
    assert a.local_acceptance == b.local_acceptance
    sampler = GlobalLocal(MALA(0.2), BroadGaussian(), "isir", n_particles=8, n_global=1, n_local=3)
    c = sampler.run(x0, mixture_log_prob, 3, generator=gen(42))
    assert not torch.equal(a.x, c.x)
    state = init_state(x0, mixture_log_prob)
    assert torch.equal(ula_step(state, mixture_log_prob, 0.1, gen(43)).x, ula_step(state, mixture_log_prob, 0.1, gen(43)).x)


# ----------------------------------------------------------------------------- 7. dtypes, parameters


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernels_keep_the_dtype_and_leave_network_parameters_alone(dtype):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)).to(dtype)

    def log_prob(x):  # a small energy-based model: network plus a confining quadratic
        return -net(x).squeeze(-1) - 0.5 * x.square().sum(1)

    x = torch.randn(64, 2, generator=gen(50), dtype=dtype)
    state = init_state(x, log_prob)
    assert state.x.dtype == state.log_prob.dtype == state.grad.dtype == dtype
    state = ula_step(state, log_prob, 0.05, generator=gen(51))
    state, _ = mala_step(state, log_prob, 0.05, generator=gen(52))
    state, _, log_q = imh_step(state, log_prob, BroadGaussian(), generator=gen(53))
    state, _, log_q = isir_step(state, log_prob, BroadGaussian(), 4, generator=gen(54), log_q_current=log_q)
    assert log_q.dtype == torch.float64
    assert state.x.dtype == state.log_prob.dtype == state.grad.dtype == dtype
    assert not state.x.requires_grad and not state.log_prob.requires_grad and not state.grad.requires_grad
    for kind in ("isir", "imh"):
        run = GlobalLocal(MALA(0.05), BroadGaussian(), kind, n_particles=4, n_global=1, n_local=2).run(
            x, log_prob, 2, generator=gen(55), keep="all")
        assert run.x.dtype == run.states.dtype == dtype and torch.isfinite(run.x).all()
    assert all(p.grad is None for p in net.parameters())


def test_bad_shapes_and_arguments_raise_value_errors():
    x = torch.zeros(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError):
        init_state(torch.zeros(4), mixture_log_prob)
    with pytest.raises(ValueError):
        init_state(x, lambda x: x.sum())  # scalar, not (B,)
    with pytest.raises(ValueError):
        init_state(x, lambda x: x)  # (B, d), not (B,)
    state = init_state(x, mixture_log_prob)
    with pytest.raises(ValueError):
        mala_step(state, mixture_log_prob, torch.full((3,), 0.1))  # wrong number of per-chain steps
    with pytest.raises(ValueError):
        mala_step(state, mixture_log_prob, -0.1)
    with pytest.raises(ValueError):
        isir_step(state, mixture_log_prob, BroadGaussian(), 1)
    with pytest.raises(ValueError):
        GlobalLocal(MALA(0.1), BroadGaussian(), "hmc")
    with pytest.raises(ValueError):
        GlobalLocal(MALA(0.1), BroadGaussian()).run(x, mixture_log_prob, 1, keep="some")
    with pytest.raises(ValueError):
        MALA(0.0)
    assert isinstance(state, ChainState)
