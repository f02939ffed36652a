"""Synthetic targets: contract (shapes, dtypes, NaN rows), exact log Z, exact samplers, gradients.

Tolerances used below:
- log Z of the 2-D targets by midpoint quadrature on a fine grid: 1e-3 absolute;
- Many Well pair normaliser by Gauss-Legendre quadrature: 1e-8 relative to 11784.50927;
- Gaussian-mixture log Z by importance sampling: 5 standard errors (estimated from the weights);
- sample moments: 5 standard errors (estimated from the samples' own fourth moments);
- histograms: the chi-square statistic over cells with expected count >= 5 must stay below
  ``dof + 5 sqrt(2 dof)`` (a 5-sigma bound for the chi-square distribution);
- autograd vs central finite differences in float64: 1e-6 relative.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from boltzflow.targets import load_target, synthetic
from boltzflow.targets.registry import registered_names

DIMS = {
    "gmm40": 2, "manywell32": 32, "manywell64": 64, "manywell128": 128, "funnel10": 10,
    "lj13": 39, "lj55": 165, "dw4": 8, "checkerboard": 2, "mixture2d_weights": 2,
    "eight_gaussians": 2, "rings": 2, "gmm4_d16": 16, "gmm4_d32": 32, "gmm4_d64": 64,
}
EXACT = [n for n in DIMS if n not in ("lj13", "lj55", "dw4")]
TWO_D = ["gmm40", "mixture2d_weights", "eight_gaussians", "rings", "checkerboard"]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def good_points(target, n: int, seed: int = 0) -> torch.Tensor:
    """Finite-energy, smooth points of ``target`` (float64)."""
    g = gen(seed)
    if target.name == "checkerboard":  # inside black squares, away from the edges
        x = target.sample(n, generator=g)
        return torch.floor(x) + 0.1 + 0.8 * (x - torch.floor(x))
    if target.name.startswith("lj"):
        from boltzflow.mcmc.reference import _lattice_init

        return _lattice_init(target.n_particles, 3, n, 1.12, 0.05, g, torch.float64)
    if target.name == "dw4":
        return 2.0 * torch.randn(n, target.dim, generator=g, dtype=torch.float64)
    return target.sample(n, generator=g)


def chi2_bound(dof: int) -> float:
    return dof + 5.0 * math.sqrt(2.0 * dof)


def chi2(counts: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    keep = expected >= 5
    stat = float((((counts[keep] - expected[keep]) ** 2) / expected[keep]).sum())
    return stat, int(keep.sum()) - 1


def normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2.0)))


# --------------------------------------------------------------------------------------------
# Contract
# --------------------------------------------------------------------------------------------


def test_all_names_registered():
    assert set(DIMS) <= set(registered_names())


def test_entry_point_load_target():
    for name in DIMS:
        assert load_target(name).dim == DIMS[name]


@pytest.mark.parametrize("name", list(DIMS))
def test_dim_shapes_dtypes(name):
    t = load_target(name)
    assert t.name == name and t.dim == DIMS[name]
    x64 = good_points(t, 7)
    e64 = t.energy(x64)
    assert e64.shape == (7,) and e64.dtype == torch.float64
    assert torch.isfinite(e64).all()
    e32 = t.energy(x64.float())
    assert e32.shape == (7,) and e32.dtype == torch.float32
    scale = e64.abs().max().item() + 1.0
    np.testing.assert_allclose(e32.double().numpy(), e64.numpy(), rtol=0, atol=2e-5 * scale)
    u, f = t.energy_and_forces(x64.float())
    assert u.dtype == torch.float32 and f.shape == (7, t.dim) and f.dtype == torch.float32


@pytest.mark.parametrize("name", list(DIMS))
def test_wrong_shape_raises(name):
    t = load_target(name)
    pattern = re.escape(f"(B, {t.dim})")
    with pytest.raises(ValueError, match=pattern):
        t.energy(torch.zeros(3, t.dim + 1))
    with pytest.raises(ValueError, match=pattern):
        t.energy(torch.zeros(t.dim))


@pytest.mark.parametrize("name", list(DIMS))
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_row_isolated(name, bad):
    t = load_target(name)
    for dtype in (torch.float32, torch.float64):
        x = good_points(t, 4).to(dtype)
        x[1, 0] = bad
        e = t.energy(x)
        assert not torch.isfinite(e[1])
        assert torch.isfinite(e[[0, 2, 3]]).all()
        if bad != bad:  # NaN
            assert torch.isnan(e[1])


@pytest.mark.parametrize("name", EXACT)
def test_sample_api(name):
    t = load_target(name)
    a = t.sample(50, generator=gen(3))
    b = t.sample(50, generator=gen(3))
    assert a.shape == (50, t.dim) and a.dtype == torch.float64 and torch.equal(a, b)
    assert t.sample(5, generator=gen(1), dtype=torch.float32).dtype == torch.float32
    assert torch.isfinite(t.energy(a)).all()
    np.testing.assert_allclose(t.log_prob(a).numpy(), (-t.energy(a) - t.log_z).numpy())


@pytest.mark.parametrize("name", ["lj13", "lj55", "dw4"])
def test_particle_targets_have_no_exact_extras(name):
    t = load_target(name)
    assert t.log_z is None and t.com_free
    with pytest.raises(NotImplementedError):
        t.sample(3)
    with pytest.raises(NotImplementedError):
        t.log_prob(good_points(t, 2))


def test_overrides():
    default = load_target("mixture2d_weights")
    np.testing.assert_allclose(default.weights.numpy(), [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(default.means.numpy(), [[-3, 0], [-1, 0], [1, 0], [3, 0]])
    assert default.std**2 == pytest.approx(0.05)
    scaled = load_target("mixture2d_weights", weights=[1, 2, 3, 4])
    np.testing.assert_allclose(scaled.weights.numpy(), default.weights.numpy())
    for bad in ([0.5, 0.5, 0.0, 0.0], [0.2, 0.3, 0.5], [1, 2, -3, 4], [1, 2, math.nan, 4], "abcd"):
        with pytest.raises(ValueError):
            load_target("mixture2d_weights", weights=bad)
    t = load_target("gmm4_d16", a=1.0)
    assert t.means.shape == (4, 16)
    np.testing.assert_allclose(t.means[0].numpy(), np.ones(16))
    np.testing.assert_allclose(t.means[1].numpy(), np.r_[-np.ones(8), np.ones(8)])
    np.testing.assert_allclose(t.means[2].numpy(), -t.means[1].numpy())
    np.testing.assert_allclose(t.means[3].numpy(), -t.means[0].numpy())
    assert load_target("gmm4_d64").a == 0.5919
    assert load_target("eight_gaussians").means.shape == (8, 2)
    with pytest.raises(TypeError):
        load_target("lj13", temperature=2.0)


def test_gmm40_package_data():
    means = load_target("gmm40").means.numpy()
    assert means.shape == (40, 2)
    assert np.abs(means).max() < 41


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list(DIMS))
def test_cuda(name):  # pragma: no cover - needs a GPU
    t = load_target(name)
    x = good_points(t, 5)
    e = t.energy(x.cuda())
    assert e.device.type == "cuda"
    np.testing.assert_allclose(e.cpu().numpy(), t.energy(x).numpy(), rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Energies: hand-computed values and invariances
# --------------------------------------------------------------------------------------------


def test_lennard_jones_values():
    dimer = synthetic.LennardJonesCluster("lj2", 2)
    x = torch.tensor([[0.0, 0, 0, 1.0, 0, 0]], dtype=torch.float64)
    # 2 * (1 - 2) + 0.5 * (0.5^2 + 0.5^2)
    assert dimer.energy(x).item() == pytest.approx(-1.75, abs=1e-12)
    close = torch.tensor([[0.0, 0, 0, 1e-3, 0, 0], [0.0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    for dtype in (torch.float32, torch.float64):
        e = dimer.energy(close.to(dtype))
        assert not torch.isnan(e).any() and e[0] > 1e30 and e[1] == math.inf
    t = load_target("lj13")
    x = good_points(t, 3)
    np.testing.assert_allclose(t.energy(x + torch.tensor([0.3, -1.0, 2.0]).repeat(13)).numpy(),
                               t.energy(x).numpy(), rtol=1e-12)


def test_dw4_values():
    t = load_target("dw4")
    square = torch.tensor([[0.0, 0, 4, 0, 4, 4, 0, 4]], dtype=torch.float64)
    u = 4 * math.sqrt(2) - 4
    assert t.energy(square).item() == pytest.approx(2 * (0.9 * u**4 - 4 * u**2), abs=1e-12)
    x = good_points(t, 3)
    np.testing.assert_allclose(t.energy(x + torch.tensor([5.0, -2.0]).repeat(4)).numpy(),
                               t.energy(x).numpy(), rtol=1e-12)
    assert torch.isfinite(t.energy(torch.zeros(1, 8))).all()


def test_checkerboard_values():
    t = load_target("checkerboard")
    x = torch.tensor([[-1.5, -1.5], [-0.5, -1.5], [0.5, 0.5], [1.5, -0.5], [2.5, 0.5], [0.5, 1.5]])
    np.testing.assert_array_equal(t.energy(x).numpy(), [0, math.inf, 0, 0, math.inf, math.inf])


def test_funnel_matches_normal_densities():
    t = load_target("funnel10")
    x = t.sample(100, generator=gen(0))
    n = torch.distributions.Normal
    ref = n(torch.tensor(0.0, dtype=torch.float64), torch.tensor(3.0, dtype=torch.float64)).log_prob(x[:, 0]) + n(0.0, torch.exp(0.5 * x[:, :1])).log_prob(x[:, 1:]).sum(-1)
    np.testing.assert_allclose(t.energy(x).numpy(), -ref.numpy(), rtol=1e-12, atol=1e-10)


def test_manywell_is_a_sum_of_pairs():
    t = load_target("manywell32")
    x = torch.randn(5, 32, dtype=torch.float64, generator=gen(0))
    x1, x2 = x[:, 0::2], x[:, 1::2]
    ref = (x1**4 - 6 * x1**2 - 0.5 * x1 + 0.5 * x2**2).sum(-1)
    np.testing.assert_allclose(t.energy(x).numpy(), ref.numpy(), rtol=1e-13)


# --------------------------------------------------------------------------------------------
# log Z
# --------------------------------------------------------------------------------------------

GRIDS = {  # (x range, y range, spacing) covering all but a negligible mass
    "gmm40": ((-52.0, 52.0), (-52.0, 52.0), 0.25),
    "mixture2d_weights": ((-5.0, 5.0), (-2.0, 2.0), 0.01),
    "eight_gaussians": ((-2.0, 2.0), (-2.0, 2.0), 0.01),
    "rings": ((-5.5, 5.5), (-5.5, 5.5), 0.01),
    "checkerboard": ((-2.5, 2.5), (-2.5, 2.5), 0.01),
}


def grid_log_z(target, xr, yr, h) -> float:
    xs = np.arange(xr[0] + h / 2, xr[1], h)  # cell midpoints: never on a square edge or at 0
    ys = np.arange(yr[0] + h / 2, yr[1], h)
    xx, yy = np.meshgrid(xs, ys, indexing="ij")
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1))
    total = 0.0
    for chunk in torch.split(pts, 200_000):
        total += torch.exp(-target.energy(chunk)).sum().item()
    return math.log(total * h * h)


@pytest.mark.parametrize("name", TWO_D)
def test_log_z_2d_grid(name):
    t = load_target(name)
    xr, yr, h = GRIDS[name]
    assert abs(grid_log_z(t, xr, yr, h) - t.log_z) < 1e-3


def test_log_z_values():
    assert load_target("checkerboard").log_z == pytest.approx(math.log(8), abs=1e-15)
    for name in ("gmm40", "mixture2d_weights", "eight_gaussians", "rings", "funnel10",
                 "gmm4_d16", "gmm4_d32", "gmm4_d64"):
        assert load_target(name).log_z == 0.0
    t = load_target("mixture2d_weights", weights=[4, 3, 2, 1])
    assert abs(grid_log_z(t, *GRIDS["mixture2d_weights"]) - 0.0) < 1e-3


def test_manywell_normaliser_and_log_z():
    nodes, wts = np.polynomial.legendre.leggauss(300)
    x = 6.0 * nodes  # [-6, 6]
    z1 = 6.0 * np.sum(wts * np.exp(-(x**4 - 6 * x**2 - 0.5 * x)))
    assert z1 == pytest.approx(11784.50927, rel=1e-8)
    assert synthetic.manywell_pair_normaliser() == pytest.approx(z1, rel=1e-12)
    for dim, expected in ((32, 164.6957), (64, 329.3914), (128, 658.7827)):
        t = load_target(f"manywell{dim}")
        assert t.log_z == pytest.approx(dim / 2 * (math.log(z1) + 0.5 * math.log(2 * math.pi)), abs=1e-9)
        assert t.log_z == pytest.approx(expected, abs=1e-4)


def test_manywell_rejection_envelope():
    x = np.linspace(-8.0, 8.0, 1_600_001)  # 10x finer than the grid the bound was found on
    log_ratio = -synthetic._double_well_1d(x) - synthetic._envelope_log_q(x)
    log_m = synthetic.manywell_envelope_log_bound()
    assert log_ratio.max() <= log_m
    assert log_ratio.max() > log_m - 2e-3  # and tight
    # beyond the grid the ratio keeps falling: the quartic beats every Gaussian tail
    assert np.all(np.diff(log_ratio[x > 4]) < 0) and np.all(np.diff(log_ratio[x < -4]) > 0)
    acceptance = synthetic.manywell_pair_normaliser() / math.exp(log_m)
    assert acceptance > 0.75


@pytest.mark.parametrize("name", ["gmm4_d16", "gmm4_d32", "gmm4_d64"])
def test_gmm4_log_z_importance_sampling(name):
    # proposal: the four modes with variance 1.1 (per-dimension weight variance factor 1.004)
    t = load_target(name)
    n, s = 50_000, math.sqrt(1.1)
    comp = torch.distributions.Categorical(torch.full((4,), 0.25, dtype=torch.float64))
    normal = torch.distributions.Independent(
        torch.distributions.Normal(t.means, torch.full_like(t.means, s)), 1)
    q = torch.distributions.MixtureSameFamily(comp, normal)
    g = gen(5)
    k = torch.randint(0, 4, (n,), generator=g)
    x = t.means[k] + s * torch.randn(n, t.dim, generator=g, dtype=torch.float64)
    log_w = -t.energy(x) - q.log_prob(x)
    w = torch.exp(log_w - log_w.max())
    log_z_hat = math.log(w.mean().item()) + log_w.max().item()
    rel_se = (w.std() / w.mean()).item() / math.sqrt(n)
    assert rel_se < 0.01
    assert abs(log_z_hat - t.log_z) < 5 * rel_se


# --------------------------------------------------------------------------------------------
# Exact samplers: moments
# --------------------------------------------------------------------------------------------


def check_moments(x: np.ndarray, mean: np.ndarray, cov: np.ndarray, n_sigma: float = 5.0):
    n = len(x)
    m = x.mean(0)
    se_m = x.std(0) / math.sqrt(n)
    assert np.all(np.abs(m - mean) < n_sigma * se_m + 1e-12), (m, mean)
    xc = x - mean
    c = xc.T @ xc / n
    c2 = (xc**2).T @ (xc**2) / n  # E[(x_i x_j)^2]
    se_c = np.sqrt(np.maximum(c2 - c**2, 0.0) / n)
    assert np.all(np.abs(c - cov) < n_sigma * se_c + 1e-12), (c, cov)


def mixture_moments(t) -> tuple[np.ndarray, np.ndarray]:
    w, mu = t.weights.numpy(), t.means.numpy()
    mean = w @ mu
    second = t.std**2 * np.eye(t.dim) + np.einsum("k,ki,kj->ij", w, mu, mu)
    return mean, second - np.outer(mean, mean)


@pytest.mark.parametrize("name", ["gmm40", "mixture2d_weights", "eight_gaussians", "gmm4_d16", "gmm4_d32"])
def test_mixture_sample_moments(name):
    t = load_target(name)
    x = t.sample(100_000, generator=gen(11)).numpy()
    check_moments(x, *mixture_moments(t))


def test_checkerboard_sample_moments():
    t = load_target("checkerboard")
    black = [(k, l) for k in range(-2, 2) for l in range(-2, 2) if (k + l) % 2 == 0]
    assert len(black) == 8
    exy = np.mean([(k + 0.5) * (l + 0.5) for k, l in black])
    cov = np.array([[4 / 3, exy], [exy, 4 / 3]])
    x = t.sample(100_000, generator=gen(12)).numpy()
    check_moments(x, np.zeros(2), cov)


def test_rings_sample_moments():
    t = load_target("rings")
    er2 = np.mean([c**2 + 0.15**2 for c in (1, 2, 3, 4)])
    x = t.sample(100_000, generator=gen(13)).numpy()
    check_moments(x, np.zeros(2), 0.5 * er2 * np.eye(2))
    assert np.all(np.linalg.norm(x, axis=1) > 0)


def test_manywell_sample_moments():
    t = load_target("manywell32")
    x = t.sample(20_000, generator=gen(14)).numpy()
    grid = np.linspace(-6, 6, 24_001)
    dens = np.exp(-synthetic._double_well_1d(grid))
    dens /= np.trapezoid(dens, grid)
    m1 = np.trapezoid(grid * dens, grid)
    v1 = np.trapezoid((grid - m1) ** 2 * dens, grid)
    mean = np.tile([m1, 0.0], 16)
    cov = np.diag(np.tile([v1, 1.0], 16))
    check_moments(x, mean, cov)


def test_funnel_sample_structure():
    t = load_target("funnel10")
    x = t.sample(100_000, generator=gen(15)).numpy()
    z = np.concatenate([x[:, :1] / 3.0, x[:, 1:] * np.exp(-0.5 * x[:, :1])], axis=1)
    check_moments(z, np.zeros(10), np.eye(10))  # i.i.d. N(0, 1) after whitening


# --------------------------------------------------------------------------------------------
# Exact samplers: histograms against the density
# --------------------------------------------------------------------------------------------

HIST = {  # (x range, y range, bins per axis)
    "gmm40": ((-50.0, 50.0), (-50.0, 50.0), 50),
    "mixture2d_weights": ((-4.0, 4.0), (-1.0, 1.0), 40),
    "eight_gaussians": ((-1.6, 1.6), (-1.6, 1.6), 32),
    "rings": ((-4.8, 4.8), (-4.8, 4.8), 32),
    "checkerboard": ((-2.0, 2.0), (-2.0, 2.0), 16),
}


@pytest.mark.parametrize("name", TWO_D)
def test_2d_sample_histogram(name):
    t = load_target(name)
    (x0, x1), (y0, y1), nb = HIST[name]
    n = 100_000
    s = t.sample(n, generator=gen(21)).numpy()
    counts, _, _ = np.histogram2d(s[:, 0], s[:, 1], bins=nb, range=[[x0, x1], [y0, y1]])
    sub = 10  # midpoint rule with sub x sub points per cell
    hx, hy = (x1 - x0) / (nb * sub), (y1 - y0) / (nb * sub)
    xs = x0 + hx * (np.arange(nb * sub) + 0.5)
    ys = y0 + hy * (np.arange(nb * sub) + 0.5)
    xx, yy = np.meshgrid(xs, ys, indexing="ij")
    pts = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], 1))
    dens = torch.exp(t.log_prob(pts)).numpy().reshape(nb, sub, nb, sub)
    expected = n * dens.sum(axis=(1, 3)) * hx * hy
    stat, dof = chi2(counts, expected)
    assert dof > 50
    assert stat < chi2_bound(dof), (stat, dof)


def test_manywell_sample_histogram():
    t = load_target("manywell32")
    x1 = t.sample(10_000, generator=gen(22))[:, 0::2].numpy().ravel()  # 160,000 draws
    edges = np.linspace(-3.0, 3.0, 121)
    counts, _ = np.histogram(x1, bins=edges)
    fine = np.linspace(-3.0, 3.0, 120 * 50 + 1)
    dens = np.exp(-synthetic._double_well_1d(fine)) / synthetic.manywell_pair_normaliser()
    cell = np.array([np.trapezoid(dens[i * 50 : (i + 1) * 50 + 1], fine[i * 50 : (i + 1) * 50 + 1])
                     for i in range(120)])
    stat, dof = chi2(counts, len(x1) * cell)
    assert stat < chi2_bound(dof), (stat, dof)
    # the x2 coordinates are standard normal
    x2 = t.sample(5_000, generator=gen(23))[:, 1::2].numpy().ravel()
    edges = np.linspace(-4, 4, 41)
    counts, _ = np.histogram(x2, bins=edges)
    stat, dof = chi2(counts, len(x2) * np.diff(normal_cdf(edges)))
    assert stat < chi2_bound(dof), (stat, dof)


def test_funnel_sample_histogram():
    t = load_target("funnel10")
    x = t.sample(100_000, generator=gen(24)).numpy()
    edges = np.linspace(-12, 12, 49)
    counts, _ = np.histogram(x[:, 0], bins=edges)
    stat, dof = chi2(counts, len(x) * np.diff(normal_cdf(edges / 3.0)))
    assert stat < chi2_bound(dof), (stat, dof)


@pytest.mark.parametrize("name", ["gmm4_d16", "gmm4_d64"])
def test_gmm4_projection_histogram(name):
    t = load_target(name)
    x = t.sample(100_000, generator=gen(25)).numpy()
    proj = x.sum(1) / math.sqrt(t.dim)  # 1/4 N(+c, 1) + 1/2 N(0, 1) + 1/4 N(-c, 1)
    c = t.a * math.sqrt(t.dim)
    edges = np.linspace(-c - 5, c + 5, 81)
    cdf = 0.25 * normal_cdf(edges - c) + 0.5 * normal_cdf(edges) + 0.25 * normal_cdf(edges + c)
    counts, _ = np.histogram(proj, bins=edges)
    stat, dof = chi2(counts, len(x) * np.diff(cdf))
    assert stat < chi2_bound(dof), (stat, dof)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DIMS))
def test_gradients_match_finite_differences(name):
    t = load_target(name)
    x = good_points(t, 3, seed=31)
    _, forces = t.energy_and_forces(x)
    grad = -forces
    h = 1e-6
    eye = torch.eye(t.dim, dtype=torch.float64)
    for row in range(3):
        plus = t.energy(x[row] + h * eye)
        minus = t.energy(x[row] - h * eye)
        fd = (plus - minus) / (2 * h)
        scale = max(1.0, grad[row].abs().max().item())
        np.testing.assert_allclose(grad[row].numpy(), fd.numpy(), rtol=1e-6, atol=1e-6 * scale)
