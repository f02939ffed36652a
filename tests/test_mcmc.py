"""MCMC kernels: invariance of a known Gaussian mixture, mixing, adaptation, bookkeeping.

Invariance tests start chains from exact samples of the mixture, apply the kernel, and compare the
chains' first and second moments and the weight of the right component with their exact values.
The tolerance is 5 standard errors of a mean over the chains (computed from the exact variance),
so a correct kernel fails by chance with probability ~1e-6 per check; the negative controls show
that a kernel with a wrong correction does fail the same check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from boltzflow.mcmc import (
    MALA,
    ULA,
    CountingLogProb,
    GlobalLocal,
    imh_step,
    init_state,
    isir_step,
    mala_step,
    neighbour_swap,
    reference_samples,
    ula_step,
)
from boltzflow.md import BatchedLangevin

WEIGHTS = torch.tensor([0.3, 0.7], dtype=torch.float64)
MEANS = torch.tensor([[-2.0, 0.0], [2.0, 0.5]], dtype=torch.float64)
STD = 0.5


def log_target(x: torch.Tensor) -> torch.Tensor:
    means, w = MEANS.to(x.dtype), WEIGHTS.to(x.dtype)
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    return torch.logsumexp(torch.log(w) - 0.5 * sq / STD**2 - math.log(2 * math.pi * STD**2), dim=1)


def exact_samples(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    comp = torch.multinomial(WEIGHTS, n, replacement=True, generator=gen)
    return MEANS[comp] + STD * torch.randn(n, 2, generator=gen, dtype=torch.float64)


class BroadGaussian:
    """Proposal N(0, 3^2 I) (``shift`` adds a non-constant error to its reported log q)."""

    def __init__(self, shift: float = 0.0):
        self.shift = shift

    def log_prob(self, x):
        x = x.to(torch.float64)
        return -0.5 * (x / 3.0).square().sum(1) - 2 * math.log(3.0) - math.log(2 * math.pi) + self.shift * x[:, 0]

    def sample(self, n, generator=None):
        y = 3.0 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return y, self.log_prob(y)


def statistics(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.mean(0), x.square().mean(0), (x[:, 0] > 0).to(x.dtype).mean()[None]])


def exact_moments(n_ref: int = 2_000_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact values of the statistics and their per-sample standard deviations."""
    mean = (WEIGHTS[:, None] * MEANS).sum(0)
    second = (WEIGHTS[:, None] * (MEANS**2 + STD**2)).sum(0)
    right = WEIGHTS[1]  # the left component puts ~3e-5 of its mass at x0 > 0: negligible here
    var_x = second - mean**2
    fourth = (WEIGHTS[:, None] * (MEANS**4 + 6 * MEANS**2 * STD**2 + 3 * STD**4)).sum(0)
    var_x2 = fourth - second**2
    values = torch.cat([mean, second, right[None]])
    sds = torch.cat([var_x.sqrt(), var_x2.sqrt(), (right * (1 - right)).sqrt()[None]])
    return values, sds


def invariant(x: torch.Tensor) -> bool:
    values, sds = exact_moments()
    z = (statistics(x) - values).abs() / (sds / math.sqrt(len(x)))
    return bool((z < 5.0).all())


N = 4000


def test_start_is_exact():
    assert invariant(exact_samples(N, 0))


def test_mala_leaves_the_mixture_invariant_and_ula_does_not():
    gen = torch.Generator().manual_seed(1)
    state = init_state(exact_samples(N, 1), log_target)
    for _ in range(20):
        state, _ = mala_step(state, log_target, 0.3, gen)
    assert invariant(state.x)
    # negative control: the same proposal without the MH correction is biased at this step size
    state = init_state(exact_samples(N, 1), log_target)
    for _ in range(20):
        state = ula_step(state, log_target, 0.3, gen)
    assert not invariant(state.x)


@pytest.mark.parametrize("kind", ["isir", "imh"])
def test_global_kernels_leave_the_mixture_invariant_and_a_wrong_log_q_breaks_them(kind):
    gen = torch.Generator().manual_seed(2)

    def advance(proposal):
        state = init_state(exact_samples(N, 2), log_target, with_grad=False)
        for _ in range(5):
            if kind == "isir":
                state, _, _ = isir_step(state, log_target, proposal, 8, gen)
            else:
                state, _, _ = imh_step(state, log_target, proposal, gen)
        return state.x

    assert invariant(advance(BroadGaussian()))
    assert not invariant(advance(BroadGaussian(shift=0.8)))


def test_global_local_leaves_the_mixture_invariant_and_keeps_all_states():
    gen = torch.Generator().manual_seed(3)
    sampler = GlobalLocal(MALA(0.2, adapt=False), BroadGaussian(), "isir", n_particles=8, n_global=1, n_local=3)
    run = sampler.run(exact_samples(N, 3), log_target, 3, generator=gen, keep="all")
    assert invariant(run.x)
    assert run.states.shape == (12, N, 2) and run.n_steps == 12
    assert torch.equal(run.states[-1], run.x)
    assert 0 < run.global_acceptance < 1 and 0 < run.local_acceptance < 1


def test_flow_moves_reach_the_other_mode_and_local_steps_alone_do_not():
    gen = torch.Generator().manual_seed(4)
    left = MEANS[0] + STD * torch.randn(2000, 2, generator=gen, dtype=torch.float64)
    mixed = GlobalLocal(MALA(0.05, adapt=False), BroadGaussian(), "isir", n_particles=16, n_global=1, n_local=2)
    right = float((mixed.run(left, log_target, 6, generator=gen).x[:, 0] > 0).double().mean())
    assert abs(right - 0.7) < 5 * math.sqrt(0.21 / 2000)
    local = GlobalLocal(MALA(0.05, adapt=False), None, n_local=18)
    assert float((local.run(left, log_target, 1, generator=gen).x[:, 0] > 0).double().mean()) < 0.05


def test_mala_adapts_its_step_toward_the_target_acceptance():
    gen = torch.Generator().manual_seed(5)

    def std_normal(x):
        return -0.5 * x.square().sum(1)

    kernel = MALA(5.0, target_acceptance=0.574)
    state = init_state(torch.randn(500, 10, generator=gen, dtype=torch.float64), std_normal)
    rates = []
    for _ in range(300):
        state, accepted = kernel.step(state, std_normal, gen)
        rates.append(float(accepted.double().mean()))
    assert abs(sum(rates[-100:]) / 100 - 0.574) < 0.1
    assert kernel.step_size < 5.0
    restored = MALA(1.0)
    restored.load_state_dict(kernel.state_dict())
    assert restored.step_size == kernel.step_size


def test_counting_and_non_finite_proposals_are_rejected():
    counted = CountingLogProb(log_target)
    counted(torch.zeros(3, 2))
    counted(torch.zeros(5, 2))
    assert counted.calls == 8

    def walled(x):  # zero density (or undefined) for x0 > -1.5
        lp = log_target(x)
        return torch.where(x[:, 0] > -1.5, torch.full_like(lp, float("nan")), lp)

    gen = torch.Generator().manual_seed(6)
    start = torch.full((200, 2), -2.0, dtype=torch.float64)
    state = init_state(start, walled)
    for _ in range(20):
        state, _ = mala_step(state, walled, 0.5, gen)
    assert torch.isfinite(state.x).all() and torch.isfinite(state.log_prob).all()
    assert (state.x[:, 0] <= -1.5).all()


def test_same_seed_same_chains_in_both_dtypes_and_no_parameter_gradients():
    net = torch.nn.Linear(2, 1)

    def learned(x):
        return log_target(x) + net(x.to(net.weight.dtype)).squeeze(-1).to(x.dtype)

    for dtype in (torch.float32, torch.float64):
        x = exact_samples(64, 7).to(dtype)
        sampler = GlobalLocal(MALA(0.1), BroadGaussian(), "isir", n_particles=4, n_global=1, n_local=2)
        a = sampler.run(x, learned, 2, generator=torch.Generator().manual_seed(8)).x
        sampler = GlobalLocal(MALA(0.1), BroadGaussian(), "isir", n_particles=4, n_global=1, n_local=2)
        b = sampler.run(x, learned, 2, generator=torch.Generator().manual_seed(8)).x
        assert torch.equal(a, b) and a.dtype == dtype
        assert ULA(0.01).step(init_state(x, learned), learned)[0].x.dtype == dtype
    assert net.weight.grad is None and net.bias.grad is None


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"\(B, d\)"):
        init_state(torch.zeros(3), log_target)
    with pytest.raises(ValueError, match="n_particles >= 2"):
        isir_step(init_state(torch.zeros(2, 2), log_target), log_target, BroadGaussian(), 1)
    with pytest.raises(ValueError, match="global_kind"):
        GlobalLocal(MALA(0.1), BroadGaussian(), "hmc")
    with pytest.raises(ValueError, match="log_prob returned shape"):
        init_state(torch.zeros(2, 2), lambda x: x)


@pytest.mark.parametrize("kind", ["isir", "imh"])
def test_global_moves_leave_points_of_zero_or_undefined_density(kind):
    def holed(x):  # no density (NaN) left of -3, zero density (-inf) right of 3
        lp = log_target(x)
        lp = torch.where(x[:, 0] < -3, torch.full_like(lp, float("nan")), lp)
        return torch.where(x[:, 0] > 3, torch.full_like(lp, -float("inf")), lp)

    start = torch.tensor([[-4.0, 0.0], [4.0, 0.0]], dtype=torch.float64).repeat(100, 1)
    state = init_state(start, holed, with_grad=False)
    gen = torch.Generator().manual_seed(9)
    if kind == "isir":
        state, accepted, _ = isir_step(state, holed, BroadGaussian(), 8, gen)
    else:
        state, accepted, _ = imh_step(state, holed, BroadGaussian(), gen)
    # a draw of N(0, 9) lands where pi > 0 (|x0| < 3) with probability 0.68; i-SIR has 7 such tries
    assert accepted.double().mean() > (0.9 if kind == "isir" else 0.55)
    assert torch.isfinite(state.log_prob[accepted]).all()


def test_annealed_importance_sampling_is_unbiased_in_z_and_counts_its_calls():
    """AIS from N(0, 1) to an unnormalised Gaussian N(m, s^2) (Z known): with fixed step sizes
    E[w] = Z, so mean(w / Z) is 1 within its standard error; with one annealing step it is plain
    importance sampling, unbiased as well but far noisier; the final states have the target's mean."""
    from boltzflow.mcmc import CountingLogProb, annealed_importance_sampling

    d, s = 4, 0.5
    m = torch.full((d,), 1.5, dtype=torch.float64)
    log_target = CountingLogProb(lambda x: -0.5 * (x - m).square().sum(1) / s**2)
    log_z = 0.5 * d * math.log(2 * math.pi * s * s)
    g = torch.Generator().manual_seed(3)
    spreads = {}
    for steps in (1, 100):
        log_target.calls = 0
        x0 = torch.randn(4000, d, generator=g, dtype=torch.float64)
        result = annealed_importance_sampling(log_target, x0, 1.0, steps, 0.1, g, adapt_factor=1.0)
        assert log_target.calls == 4000 * (steps + 1)
        ratio = torch.exp(result.log_weights - log_z)
        se = float(ratio.std() / math.sqrt(len(ratio)))
        assert abs(float(ratio.mean()) - 1.0) < 4 * se + 1e-3, (steps, float(ratio.mean()), se)
        spreads[steps] = float(result.log_weights.std())
    assert spreads[100] < 0.2 * spreads[1], spreads  # annealing is what makes the weights even
    assert abs(result.log_z - log_z) < 0.1
    w = torch.softmax(result.log_weights, 0)
    torch.testing.assert_close((w[:, None] * result.x).sum(0), m, atol=0.05, rtol=0)
    assert 0.3 < result.acceptance < 1.0


def test_annealed_importance_sampling_finds_the_manywell_log_z():
    """Manywell in d = 4 (log Z known in closed form): adaptive AIS with 200 steps is within 0.05."""
    from boltzflow.mcmc import annealed_importance_sampling
    from boltzflow.targets.synthetic import ManyWell

    target = ManyWell("manywell4", 4)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    result = annealed_importance_sampling(lambda x: -target.energy(x), x0, 1.0, 200, 1e-2, g)
    assert abs(result.log_z - target.log_z) < 0.05, (result.log_z, target.log_z)
    left = (result.x[:, ::2] < 0).double().mean()  # the tilt -0.5 x1 favours the right well
    assert 0.3 < float(left) < 0.5


# ---- replica exchange: one swap rule shared by the reference sampler and the torch MD engine ----
# The literals are the outputs of the two separate swap implementations that existed before
# boltzflow.mcmc.tempering (torch_md.BatchedLangevin.exchange and targets.reference), on the
# same seeds: the shared neighbour_swap must keep both callers' trajectories bitwise.


def _harmonic(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return 0.5 * 50.0 * (x * x).sum(1), -50.0 * x


def test_neighbour_swap_keeps_the_md_engine_trajectory():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        engine = BatchedLangevin(_harmonic, [1.0] * 3, [300.0, 400.0, 550.0, 700.0], n_ladders=2, seed=3)
        engine.set_positions(torch.linspace(-0.1, 0.1, 3, dtype=torch.float64))
        engine.draw_velocities()
        masks = []
        for _ in range(6):
            engine.run(5)
            masks.append(engine.exchange().to(torch.int64).tolist())
    finally:
        torch.set_num_threads(threads)
    weights = torch.arange(24, dtype=torch.float64).reshape(8, 3)
    assert masks == [[[1, 1], [1, 1]], [[1], [1]], [[1, 1], [1, 1]], [[1], [0]], [[1, 1], [1, 1]], [[1], [1]]]
    assert engine.swap_accepts.tolist() == [[3, 3, 3], [3, 2, 3]]
    assert float(engine.x.sum()) == 0.1113757826075763
    assert float((engine.x * weights).sum()) == -1.9440353627583749
    assert float((engine.v * weights).sum()) == -106.32970360851118


def test_neighbour_swap_keeps_the_reference_sampler_samples():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s, d = reference_samples("dw4", 12, n_chains=4, n_temperatures=3, t_max=3.0, burn_in=6, thin=2, log=None)
    finally:
        torch.set_num_threads(threads)
    assert float((s * np.arange(s.size).reshape(s.shape)).sum()) == 88.73741271936728
    assert d["swap_acceptance"] == [0.75, 0.6666666666666666]
    assert float(d["energies"].sum()) == -253.75313015923103


def test_neighbour_swap_swaps_exactly_the_accepted_pairs():
    energy = torch.tensor([[0.0, 50.0, 1.0, 1.0], [0.0, -50.0, 2.0, 2.0]], dtype=torch.float64)
    beta = torch.tensor([1.0, 0.5, 0.25, 0.125], dtype=torch.float64)
    accepted, perm = neighbour_swap(energy, beta, torch.tensor([0, 2]), torch.Generator().manual_seed(0))
    # pair (0, 1): ladder 1's hot slot holds the low energy (always swapped), ladder 0's is e^-25 likely
    assert not accepted[0, 0] and accepted[1, 0]
    assert perm[0, :2].tolist() == [0, 1] and perm[1, :2].tolist() == [1, 0]
    for c in range(2):
        assert perm[c, 2:].tolist() == ([3, 2] if accepted[c, 1] else [2, 3])
