"""Sample sets from a sampler (boltzflow.flows.sampling) and their scores (boltzflow.evaluation.scoring)."""

import math

import numpy as np
import pytest
import torch
from boltzflow.evaluation import evenly_spaced, score_peptide_samples
from boltzflow.flows import BoltzmannGenerator, build_flow, draw_sample_set


class GaussianSampler:
    """Exact N(0, I_d) draws with their log-density; rows listed in ``bad`` come back broken."""

    def __init__(self, dim, bad=()):
        self.dim, self.bad, self.calls = dim, set(bad), 0

    def sample(self, n, generator=None):
        x = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        log_q = -0.5 * x.square().sum(1) - 0.5 * self.dim * math.log(2 * math.pi)
        for i in range(n):
            if (self.calls, i) in self.bad:
                log_q[i] = torch.nan
        self.calls += 1
        return x, log_q


def test_an_exact_sampler_of_its_own_target_has_ess_1_and_constant_weights():
    # target exp(-|x|^2 / 2): log_w = log Z = (d/2) log(2 pi) for every sample
    draw = draw_sample_set(GaussianSampler(3), lambda x: 0.5 * x.square().sum(1), 1000, batch_size=300, seed=1)
    assert draw.x.dtype == np.float32 and draw.x.shape == (1000, 3) and draw.n_invalid == 0
    # energies are of the stored float32 coordinates, so log_w is constant to float32 rounding
    assert np.allclose(draw.log_w, 1.5 * math.log(2 * math.pi), atol=1e-5)
    again = draw_sample_set(GaussianSampler(3), lambda x: 0.5 * x.square().sum(1), 1000, batch_size=300, seed=1)
    assert np.array_equal(draw.x, again.x)  # reproducible per (seed, batch)


def test_invalid_rows_are_left_out_and_counted_and_infinite_energies_kept_with_zero_weight():
    def energy(x):
        u = 0.5 * x.square().sum(1)
        u[x[:, 0] > 1.5] = torch.inf  # e.g. overlapping atoms
        u[x[:, 1] > 2.0] = torch.nan  # a broken energy evaluation
        return u

    sampler = GaussianSampler(2, bad={(0, 3), (1, 0), (1, 7)})
    draw = draw_sample_set(sampler, energy, 500, batch_size=100, seed=0)
    x = np.concatenate([sampler_rows for sampler_rows in [draw.x]])
    assert draw.n_drawn == 500
    assert draw.n_invalid >= 3 and len(draw.x) == 500 - draw.n_invalid
    assert np.isfinite(draw.log_q).all() and not np.isnan(draw.energy).any()
    assert draw.n_zero_weight == int(np.isposinf(draw.energy).sum()) > 0
    assert (x[:, 0][np.isposinf(draw.energy)] > 1.5).all()
    assert np.isneginf(draw.log_w[np.isposinf(draw.energy)]).all()
    assert draw.stats()["n_valid"] == len(draw.x)


@pytest.fixture(scope="module")
def al2_cloud():
    """Thermal-ish noise around the minimised al2 structure with its torch energies."""
    from boltzflow.targets import load_target

    target = load_target("al2", compile=False)
    gen = torch.Generator().manual_seed(0)
    base = torch.as_tensor(target.positions).reshape(1, -1)
    x = base + 0.004 * torch.randn(1200, base.shape[1], generator=gen, dtype=torch.float64)
    with torch.no_grad():
        u = target.energy(x.to(torch.float32).to(torch.float64)).numpy()
    return target, x.to(torch.float32).numpy(), u


def test_scores_of_a_proposal_that_equals_the_reference(al2_cloud):
    import mdtraj

    target, x, u = al2_cloud
    top = mdtraj.Topology.from_openmm(target.topology)
    samples, reference = slice(0, 600), slice(600, 1200)
    # log q = -u + const: the weights are all equal
    row, resampled = score_peptide_samples(x[samples], u[samples], -u[samples] + 3.0, n_drawn=600,
                                           reference_x=x[reference], reference_energy=u[reference], topology=top,
                                           settings={"n_eval": 300, "tw2_points": 300, "quantile_filter": 0.0})
    assert row["ess"] == pytest.approx(1.0, abs=1e-9)
    spread = float(np.std(u))  # two samples of one distribution: E-W1 is sampling noise only
    assert row["e_w1"] < 0.25 * spread and row["e_w1_raw"] < 0.25 * spread and row["t_w2"] < 0.1
    assert row["mirrored_rate"] == 0 and row["unfixable_rate"] == 0
    assert len(resampled) == 300 and {"energy", "phi_ALA2", "psi_ALA2"} <= set(resampled.columns)
    # a shifted energy distribution is seen by E-W1 (same configurations, energies + 4 spreads)
    shifted, _ = score_peptide_samples(x[samples], u[samples] + 4 * spread, -u[samples], n_drawn=600,
                                       reference_x=x[reference], reference_energy=u[reference], topology=top,
                                       settings={"n_eval": 300, "tw2_points": 300, "quantile_filter": 0.0})
    assert shifted["e_w1"] == pytest.approx(4 * spread, abs=0.5 * spread)


def test_mirrored_and_invalid_samples_are_counted(al2_cloud):
    import mdtraj

    target, x, u = al2_cloud
    top = mdtraj.Topology.from_openmm(target.topology)
    xs, us = x[:400].copy(), u[:400].copy()
    xs[:100] *= -1.0  # the D enantiomer: same energy, wrong chirality
    log_q = -us.copy()
    log_q[100:110] = np.nan  # rows a broken sampler wrote
    row, _ = score_peptide_samples(xs, us, log_q, n_drawn=420, reference_x=x[600:], reference_energy=u[600:],
                                   topology=top, settings={"n_eval": 200, "tw2_points": 200})
    assert row["n_drawn"] == 420 and row["n_valid"] == 390 and row["n_invalid"] == 30
    assert row["mirrored_rate"] == pytest.approx(100 / 390)
    assert row["ess"] == pytest.approx(390 / 420, abs=1e-9)  # equal weights, but 30 proposals lost


def test_evenly_spaced():
    assert evenly_spaced(10, 3).tolist() == [0, 4, 9] or evenly_spaced(10, 3).tolist() == [0, 5, 9]
    assert evenly_spaced(3, 10).tolist() == [0, 1, 2]


def test_boltzmann_generator_gives_the_old_flow_numbers_and_log_w_is_minus_energy_minus_log_q():
    # pinned: flow.sample / flow.log_prob of the pre-refactor code on the same seeds
    torch.manual_seed(0)
    flow = build_flow({"transform": "affine", "layers": 2, "hidden": 8,
                       "frame": {"kind": "vector", "dim": 2, "scale": 1.3}})
    energy = lambda x: 0.5 * x.square().sum(1)  # noqa: E731
    bg = BoltzmannGenerator(flow, energy)
    x, log_q = bg.sample(3, generator=torch.Generator().manual_seed(5))
    assert x.double().tolist() == [[-0.6328149437904358, -0.7849680185317993], [-0.7255250811576843, 0.8677815198898315], [-0.25663962960243225, 2.525618314743042]]
    assert log_q.tolist() == [-2.663383486865036, -2.741135515761898, -4.269295659588587]
    with torch.no_grad():
        assert bg.log_q(x).tolist() == [-2.663383472357839, -2.741135515761898, -4.269295430932471]
    log_w = bg.log_w(x, log_q)
    assert log_w.dtype == torch.float64
    assert torch.equal(log_w, -energy(x.double()) - log_q)
    draw, old = bg.draw(50, batch_size=20, seed=3), draw_sample_set(flow, energy, 50, batch_size=20, seed=3)
    np.testing.assert_array_equal(draw.x, old.x)
    np.testing.assert_array_equal(draw.log_w, old.log_w)

