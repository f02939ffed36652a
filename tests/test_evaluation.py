"""Evaluation metrics against known answers: ESS, SNIS resampling, E-W1/E-W2, T-W2, chirality,
free energies (populations, Zwanzig/targeted FEP), bootstrap intervals, log Z and mode weights."""

from __future__ import annotations

import math

import mdtraj
import numpy as np
import openmm
import pytest
import torch
from boltzflow.evaluation import (
    bootstrap_ci,
    chirality_centres,
    chirality_signs,
    energy_wasserstein,
    fep_free_energy,
    fix_chirality,
    free_energy_from_populations,
    heldout_log_likelihood,
    initial_positive_sequence_tau,
    integrated_autocorrelation_time,
    kish_ess,
    log_z_importance,
    mode_coverage,
    mode_weights,
    seed_summary,
    snis_resample,
    split_rhat,
    torus_wasserstein2,
)
from boltzflow.evaluation.diagnostics import _classic_rhat
from boltzflow.mcmc import convergence_diagnostics

# --------------------------------------------------------------------------------------------
# Kish ESS
# --------------------------------------------------------------------------------------------


def test_kish_ess_on_constructed_weights():
    assert kish_ess(np.full(10, -3.7)) == pytest.approx(1.0, abs=1e-12)
    dominated = np.full(8, -np.inf)
    dominated[3] = 0.5
    assert kish_ess(dominated) == pytest.approx(1 / 8, abs=1e-12)
    # w = (1, 1, 2, 2): (sum w)^2 / (N sum w^2) = 36 / (4 * 10)
    assert kish_ess(np.log([1.0, 1.0, 2.0, 2.0]) + 100.0) == pytest.approx(0.9, abs=1e-12)
    assert kish_ess(torch.log(torch.tensor([1.0, 1.0, 2.0, 2.0]))) == pytest.approx(0.9, abs=1e-6)
    assert kish_ess(np.full(3, -np.inf)) == 0.0


# --------------------------------------------------------------------------------------------
# SNIS resampling
# --------------------------------------------------------------------------------------------


def test_snis_frequencies_match_softmax_probabilities():
    log_w = np.array([0.0, 1.0, -1.0, 2.0, -np.inf, 0.5])
    p = np.exp(log_w - np.logaddexp.reduce(log_w))
    n = 200_000
    out = snis_resample(log_w, n, generator_or_seed=123)
    assert out.indices.shape == (n,) and out.indices.dtype == np.int64 and out.n_filtered == 0
    counts = np.bincount(out.indices, minlength=len(log_w))
    assert counts[4] == 0  # weight exactly 0
    # Pearson chi-square over the 5 categories with p > 0 (4 degrees of freedom); the 99.9 %
    # quantile of chi2(4) is 18.47, so this fails for a wrong probability vector, not by chance.
    live = p > 0
    chi2 = float((((counts[live] - n * p[live]) ** 2) / (n * p[live])).sum())
    assert chi2 < 18.47
    # same seed, same draw; a Generator is accepted as well
    again = snis_resample(log_w, n, generator_or_seed=np.random.default_rng(123))
    np.testing.assert_array_equal(out.indices, again.indices)


def test_snis_quantile_filter_drops_exactly_the_top_fraction():
    rng = np.random.default_rng(0)
    log_w = rng.permutation(np.linspace(-3.0, 3.0, 1000))
    top = np.argsort(log_w)[::-1]
    out = snis_resample(log_w, 100_000, generator_or_seed=1, quantile_filter=0.002)
    assert out.n_filtered == 2
    assert not np.isin(top[:2], out.indices).any()
    assert np.isin(top[2], out.indices)  # the third largest is the most likely one left
    out = snis_resample(log_w, 100_000, generator_or_seed=2, quantile_filter=0.1)
    assert out.n_filtered == 100
    assert not np.isin(top[:100], out.indices).any()
    # the survivors keep their relative probabilities: the largest survivor is drawn the most
    counts = np.bincount(out.indices, minlength=1000)
    assert counts.argmax() in top[100:103]
    # q * N below one sample drops nothing
    assert snis_resample(log_w[:100], 10, generator_or_seed=0, quantile_filter=0.002).n_filtered == 0


def test_snis_bad_inputs():
    with pytest.raises(ValueError, match="2 NaN and 1 \\+inf"):
        snis_resample([0.0, np.nan, np.nan, np.inf], 5, generator_or_seed=0)
    with pytest.raises(ValueError, match=r"expected \(N,\)"):
        snis_resample(np.zeros((3, 2)), 5, generator_or_seed=0)
    with pytest.raises(ValueError, match="quantile_filter"):
        snis_resample(np.zeros(3), 5, generator_or_seed=0, quantile_filter=1.0)
    with pytest.raises(ValueError, match="nothing to resample"):
        snis_resample([-np.inf, -np.inf], 5, generator_or_seed=0)
    with pytest.raises(ValueError, match="nothing to resample"):  # the only live sample is filtered
        snis_resample([0.0, -np.inf, -np.inf, -np.inf], 5, generator_or_seed=0, quantile_filter=0.25)


# --------------------------------------------------------------------------------------------
# Energy Wasserstein distances
# --------------------------------------------------------------------------------------------


def test_energy_wasserstein_exact_small_cases():
    assert energy_wasserstein([0.0, 1.0], [2.0, 3.0], p=1) == pytest.approx(2.0, abs=1e-12)
    assert energy_wasserstein([0.0, 1.0], [2.0, 3.0], p=2) == pytest.approx(2.0, abs=1e-12)
    # one point moved by 4: W1 = 4 / 4 = 1, W2 = sqrt(16 / 4) = 2
    assert energy_wasserstein([0, 0, 0, 4], [0, 0, 0, 0], p=1) == pytest.approx(1.0, abs=1e-12)
    assert energy_wasserstein([0, 0, 0, 4], [0, 0, 0, 0], p=2) == pytest.approx(2.0, abs=1e-12)
    # unequal sizes: [0, 1] vs [0.5] moves each half by 0.5
    assert energy_wasserstein([0.0, 1.0], [0.5], p=1) == pytest.approx(0.5, abs=1e-12)
    assert energy_wasserstein([0.0, 1.0], [0.5], p=2) == pytest.approx(0.5, abs=1e-12)
    # quantile matching, not pairing by position
    assert energy_wasserstein([3.0, 0.0], [0.0, 3.0], p=2) == pytest.approx(0.0, abs=1e-12)


def test_energy_wasserstein_of_shifted_normals_is_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 2.0, 100_000)
    b = rng.normal(1.5, 2.0, 80_000)
    # W1 = W2 = |m1 - m2| for equal widths; the empirical distances fluctuate by ~0.01 here
    assert energy_wasserstein(a, b, p=1) == pytest.approx(1.5, abs=0.04)
    assert energy_wasserstein(a, b, p=2) == pytest.approx(1.5, abs=0.04)


def test_energy_wasserstein_bad_inputs():
    with pytest.raises(ValueError, match="2 non-finite"):
        energy_wasserstein([0.0, np.nan, np.inf], [1.0])
    with pytest.raises(ValueError, match=r"expected \(M,\)"):
        energy_wasserstein([0.0, 1.0], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        energy_wasserstein([0.0], [1.0], p=3)


# --------------------------------------------------------------------------------------------
# Torus Wasserstein-2
# --------------------------------------------------------------------------------------------


def test_torus_w2_across_the_wrap():
    # pi - 0.1 and -pi + 0.1 are 0.2 apart on the circle, not 2 pi - 0.2
    assert torus_wasserstein2([[math.pi - 0.1]], [[-math.pi + 0.1]]) == pytest.approx(0.2, abs=1e-12)
    # angles given in [0, 2 pi) or shifted by full turns give the same distance
    assert torus_wasserstein2([[0.05 + 4 * math.pi]], [[2 * math.pi - 0.05]]) == pytest.approx(0.1, abs=1e-12)


def test_torus_w2_two_points_in_two_angles():
    a = np.array([[math.pi - 0.1, 0.0], [0.0, math.pi - 0.2]])
    b = np.array([[-math.pi + 0.1, 0.3], [0.2, -math.pi + 0.1]])
    # Periodic costs: a0-b0 = 0.2^2 + 0.3^2 = 0.13, a1-b1 = 0.2^2 + 0.3^2 = 0.13 (both across the
    # wrap), while the crossed matching costs (pi-0.3)^2 + (pi-0.1)^2 and (pi-0.1)^2 + (pi-0.5)^2.
    # The optimum is the straight matching: T-W2 = sqrt((0.13 + 0.13) / 2). Without the wrap the
    # crossed matching would win (~16.8 vs ~36.5 on average), so this catches a missing wrap.
    assert torus_wasserstein2(a, b) == pytest.approx(math.sqrt(0.13), abs=1e-12)
    assert torus_wasserstein2(b, a) == pytest.approx(math.sqrt(0.13), abs=1e-12)


def test_torus_w2_uneven_sizes_and_subsampling():
    # 3 points at 0 and 1 point at 1 (N = 4) vs the single point 0: cost mean = 1/4
    a = np.array([[0.0], [0.0], [0.0], [1.0]])
    assert torus_wasserstein2(a, [[0.0]]) == pytest.approx(0.5, abs=1e-12)
    # 20 rows (10 at 0, 10 at 1) cut to a seeded random subset of 5: W2^2 = (#ones in subset) / 5
    big = np.repeat([[0.0], [1.0]], 10, axis=0)
    values = {torus_wasserstein2(big, [[0.0]], max_points=5, seed=s) for s in range(20)}
    allowed = [math.sqrt(j / 5) for j in range(6)]
    assert all(min(abs(v - t) for t in allowed) < 1e-12 for v in values)
    assert len(values) > 1  # different seeds, different subsets
    assert torus_wasserstein2(big, [[0.0]], max_points=5, seed=3) == torus_wasserstein2(
        big, [[0.0]], max_points=5, seed=3)
    assert torus_wasserstein2(big, [[0.0]], max_points=20) == pytest.approx(math.sqrt(0.5), abs=1e-12)


def test_torus_w2_bad_inputs():
    with pytest.raises(ValueError, match=r"expected \(N, k\)"):
        torus_wasserstein2(np.zeros(3), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"expected \(M, 2\)"):
        torus_wasserstein2(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="1 non-finite"):
        torus_wasserstein2(np.zeros((3, 2)), [[0.0, np.nan]])


# --------------------------------------------------------------------------------------------
# Chirality
# --------------------------------------------------------------------------------------------


def _flip_centre(x: np.ndarray, centre: tuple[int, int, int, int]) -> np.ndarray:
    """Reflect the CB of one centre through the plane of its N, CA, C (flips that centre only)."""
    ca, n, c, cb = centre
    pos = x.reshape(-1, 3).copy()
    normal = np.cross(pos[n] - pos[ca], pos[c] - pos[ca])
    normal /= np.linalg.norm(normal)
    pos[cb] -= 2.0 * np.dot(pos[cb] - pos[ca], normal) * normal
    return pos.reshape(-1)


def test_chirality_centres_of_the_builtin_peptides(al2, al4):
    # ACE: H1 CH3 H2 H3 C O | ALA: N(6) H CA(8) HA CB(10) HB1 HB2 HB3 C(14) O | NME
    assert chirality_centres(al2.topology) == [(8, 6, 14, 10)]
    centres = chirality_centres(al4.topology)
    assert centres == chirality_centres(mdtraj.Topology.from_openmm(al4.topology))
    assert len(centres) == 3
    # all three alanines are L, so they share one sign; the mirror image has the other
    signs = chirality_signs(al4.positions.reshape(1, -1), centres)
    assert signs.dtype == np.int8 and signs.shape == (1, 3)
    assert abs(int(signs.sum())) == 3
    np.testing.assert_array_equal(chirality_signs(-al4.positions.reshape(1, -1), centres), -signs)
    with pytest.raises(TypeError, match="topology"):
        chirality_centres("not a topology")


def test_fix_chirality_mirrors_and_flags(al4):
    centres = chirality_centres(al4.topology)
    x0 = al4.positions.reshape(-1)
    ref = chirality_signs(x0[None], centres)[0]
    one_flipped = _flip_centre(x0, centres[1])
    np.testing.assert_array_equal(chirality_signs(one_flipped[None], centres)[0], ref * [1, -1, 1])
    x = np.stack([x0, -x0, one_flipped, -one_flipped, x0 + 0.01])
    fixed, report = fix_chirality(x, centres, ref)
    assert report["n"] == 5 and report["mirrored"] == 1 and report["unfixable"] == 2
    assert report["mirrored_rate"] == pytest.approx(0.2) and report["unfixable_rate"] == pytest.approx(0.4)
    np.testing.assert_array_equal(report["unfixable_mask"], [False, False, True, True, False])
    np.testing.assert_array_equal(fixed[1], x0)  # the mirror image is restored exactly
    np.testing.assert_array_equal(fixed[[0, 2, 3, 4]], x[[0, 2, 3, 4]])  # the rest is untouched
    assert (chirality_signs(fixed[~report["unfixable_mask"]], centres) == ref).all()
    # a torch input works too, and leaves the caller's array alone
    fixed_t, report_t = fix_chirality(torch.as_tensor(x), centres, ref)
    np.testing.assert_array_equal(fixed_t, fixed)
    np.testing.assert_array_equal(x[1], -x0)


def test_mirroring_changes_no_energy(al2):
    context = openmm.Context(al2.system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))

    def energy(pos: np.ndarray) -> float:
        context.setPositions(pos)
        return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)

    assert energy(-al2.positions) == pytest.approx(energy(al2.positions), rel=1e-9, abs=1e-6)


def test_chirality_bad_inputs(al2):
    centres = chirality_centres(al2.topology)
    x = al2.positions.reshape(1, -1)
    with pytest.raises(ValueError, match=r"expected \(B, 3 \* n_atoms\)"):
        chirality_signs(al2.positions, centres)  # (22, 3) read as 22 one-atom frames
    with pytest.raises(ValueError, match=r"expected \(B, 3 \* n_atoms\)"):
        chirality_signs(x[:, :-1], centres)
    with pytest.raises(ValueError, match=r"expected \(1,\)"):
        fix_chirality(x, centres, [1, 1])
    with pytest.raises(ValueError, match="non-finite"):
        chirality_signs(np.full_like(x, np.nan), centres)


# --------------------------------------------------------------------------------------------
# Free energies
# --------------------------------------------------------------------------------------------


def test_free_energy_from_populations_exact():
    in_a = np.array([True, True, True, False, False])
    in_b = np.array([False, False, False, True, False])
    assert free_energy_from_populations(in_a, in_b) == pytest.approx(math.log(3.0), abs=1e-12)
    assert free_energy_from_populations(in_b, in_a) == pytest.approx(-math.log(3.0), abs=1e-12)
    # weights (1, 1, 2 | 8 | anything): p_B / p_A = 8 / 4; a -inf weight in B counts as 0
    log_w = np.log([1.0, 1.0, 2.0, 8.0, 5.0]) - 7.0
    assert free_energy_from_populations(in_a, in_b, log_w=log_w) == pytest.approx(-math.log(2.0), abs=1e-12)
    in_b2 = np.array([False, False, False, True, True])
    log_w2 = np.log([1.0, 1.0, 2.0, 8.0, 1.0])
    log_w2[4] = -np.inf
    assert free_energy_from_populations(in_a, in_b2, log_w=log_w2) == pytest.approx(-math.log(2.0), abs=1e-12)
    with pytest.raises(ValueError, match="state B is empty"):
        free_energy_from_populations(in_a, np.zeros(5, bool))
    with pytest.raises(ValueError, match="state B has total weight 0"):
        free_energy_from_populations(in_a, in_b, log_w=[0, 0, 0, -np.inf, 0])
    with pytest.raises(ValueError, match=r"expected \(5,\)"):
        free_energy_from_populations(in_a, in_b[:4])
    with pytest.raises(ValueError, match="boolean"):
        free_energy_from_populations(in_a.astype(int), in_b)
    with pytest.raises(ValueError, match="1 NaN"):
        free_energy_from_populations(in_a, in_b, log_w=[0, 0, np.nan, 0, 0])


def test_fep_on_harmonic_wells():
    # A = N(0, s_A^2 I_d), B = N(0, s_B^2 I_d), u = |x|^2 / (2 s^2): dF = -log(Z_B / Z_A) = -d log(s_B / s_A)
    d, s_a, s_b = 3, 2.0, 1.0
    df = -d * math.log(s_b / s_a)
    x = np.random.default_rng(0).normal(0.0, s_a, (200_000, d))
    u_a = (x**2).sum(1) / (2 * s_a**2)

    # plain Zwanzig (identity map); B narrower than A keeps exp(-work) bounded. The standard
    # error of the estimate is ~0.004 here, so 0.02 is a 5-sigma tolerance.
    work = (x**2).sum(1) / (2 * s_b**2) - u_a
    assert fep_free_energy(work) == pytest.approx(df, abs=0.02)

    # targeted FEP with M(x) = (s_B / s_A) x: log|det J| = d log(s_B / s_A), the work is the constant dF
    y = (s_b / s_a) * x
    work_t = (y**2).sum(1) / (2 * s_b**2) - u_a - d * math.log(s_b / s_a)
    assert np.ptp(work_t) < 1e-12
    assert fep_free_energy(work_t) == pytest.approx(df, abs=1e-12)
    assert fep_free_energy(torch.as_tensor(work_t, dtype=torch.float32)) == pytest.approx(df, abs=1e-5)


def test_fep_edge_cases():
    assert fep_free_energy([1.0, np.inf]) == pytest.approx(-math.log(math.exp(-1.0) / 2), abs=1e-12)
    assert fep_free_energy([np.inf, np.inf]) == math.inf
    assert fep_free_energy([1e4, 1e4 + 1]) == pytest.approx(1e4 - math.log((1 + math.exp(-1)) / 2), abs=1e-9)
    with pytest.raises(ValueError, match="1 NaN and 1 -inf"):
        fep_free_energy([0.0, np.nan, -np.inf])
    with pytest.raises(ValueError, match=r"expected \(N,\)"):
        fep_free_energy(np.zeros((2, 2)))


# --------------------------------------------------------------------------------------------
# Bootstrap and seed summaries
# --------------------------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_true_mean_at_about_the_stated_rate():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(200):
        sample = rng.normal(1.0, 3.0, 50)
        est, low, high = bootstrap_ci(np.mean, sample, n_boot=400, level=0.95, seed=rep)
        assert low <= est <= high and est == pytest.approx(sample.mean())
        hits += low <= 1.0 <= high
    # percentile bootstrap of a mean of 50 normals: ~0.93-0.94; binomial sd over 200 reps ~0.017
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_ci_resamples_arrays_together_and_by_blocks():
    x = np.random.default_rng(1).normal(size=300)
    # rows resampled together: a and a copy of it always stay equal
    assert tuple(bootstrap_ci(lambda a, b: np.abs(a - b).max(), x, x.copy(), n_boot=100)) == (0.0, 0.0, 0.0)
    # a wider level gives a wider interval, from the same replicates
    _, lo90, hi90 = bootstrap_ci(np.mean, x, level=0.90)
    _, lo99, hi99 = bootstrap_ci(np.mean, x, level=0.99)
    assert lo99 < lo90 < hi90 < hi99
    # an AR(1) series with correlation time ~50: blocks see the correlation, iid rows do not
    rng = np.random.default_rng(2)
    series = np.zeros(4000)
    for t in range(1, len(series)):
        series[t] = 0.98 * series[t - 1] + rng.normal()
    _, lo, hi = bootstrap_ci(np.mean, series, n_boot=300)
    _, blo, bhi = bootstrap_ci(np.mean, series, n_boot=300, block=200)
    assert (bhi - blo) > 3.0 * (hi - lo)
    # boolean indicators survive the resampling (free energy with a CI)
    in_a = np.arange(100) < 75
    est, low, high = bootstrap_ci(free_energy_from_populations, in_a, ~in_a, n_boot=200)
    assert est == pytest.approx(math.log(3.0)) and low < est < high
    with pytest.raises(ValueError, match="expected the same"):
        bootstrap_ci(np.mean, x, x[:-1])
    with pytest.raises(ValueError, match="block"):
        bootstrap_ci(np.mean, x, block=1000)


def test_seed_summary():
    out = seed_summary([1.0, 2.0, 3.0])
    assert out["n"] == 3 and out["mean"] == pytest.approx(2.0)
    assert 1.0 <= out["low"] < 2.0 < out["high"] <= 3.0
    assert seed_summary([0.7]) == {"mean": 0.7, "low": 0.7, "high": 0.7, "n": 1}
    assert seed_summary([5.0, 5.0]) == {"mean": 5.0, "low": 5.0, "high": 5.0, "n": 2}
    with pytest.raises(ValueError, match="1 non-finite"):
        seed_summary([1.0, np.nan])
    with pytest.raises(ValueError, match=r"expected \(n_seeds,\)"):
        seed_summary(np.zeros((2, 2)))


# --------------------------------------------------------------------------------------------
# Synthetic targets: log Z and modes
# --------------------------------------------------------------------------------------------


def test_log_z_importance_with_a_normalised_gaussian_proposal():
    # target p~(x) = exp(-|x|^2 / (2 s_t^2)) in d = 2: log Z = d log(sqrt(2 pi) s_t); proposal N(0, s_q^2 I)
    d, s_t, s_q = 2, 1.5, 2.0
    log_z = d * math.log(math.sqrt(2 * math.pi) * s_t)
    rng = np.random.default_rng(0)

    def log_weights(x):
        r2 = (x**2).sum(-1)
        return -r2 / (2 * s_t**2) - (-r2 / (2 * s_q**2) - d * math.log(math.sqrt(2 * math.pi) * s_q))

    # relative sd of w is ~0.5 here, so with 10^5 samples the standard error is ~0.002
    assert log_z_importance(log_weights(rng.normal(0, s_q, (100_000, d)))) == pytest.approx(log_z, abs=0.01)
    # the finite-sample bias is downward: averaged over many tiny runs the estimate is too low
    small = [log_z_importance(log_weights(rng.normal(0, s_q, (4, d)))) for _ in range(2000)]
    assert np.mean(small) < log_z - 0.01
    assert log_z_importance([-np.inf, -np.inf]) == -math.inf
    with pytest.raises(ValueError, match="3 NaN"):
        log_z_importance([np.nan, 0.0, np.nan, np.nan])


def test_mode_weights_and_coverage():
    centres = np.array([[-5.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    weights = np.array([0.5, 0.3, 0.2])
    rng = np.random.default_rng(0)
    n = 20_000
    labels = rng.choice(3, size=n, p=weights)
    x = centres[labels] + rng.normal(0.0, 0.5, (n, 2))
    # zones are > 3.5 sd apart, so the zone shares are the multinomial fractions (sd ~0.0035)
    np.testing.assert_allclose(mode_weights(x, centres), weights, atol=0.015)
    # exact weighted case in 1-D: zones {0, 0.9} and {2.1, 3}; weights (1, 1 | 1, 3)
    x1 = np.array([[0.0], [0.9], [2.1], [3.0]])
    c1 = np.array([[0.0], [3.0]])
    np.testing.assert_allclose(mode_weights(x1, c1), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(mode_weights(x1, c1, log_w=np.log([1, 1, 1, 3])), [2 / 6, 4 / 6], atol=1e-12)
    np.testing.assert_allclose(mode_weights(x1, c1, log_w=[0, 0, 0, -np.inf]), [2 / 3, 1 / 3], atol=1e-12)
    # coverage: samples near two of the three centres only
    near_two = x[labels != 2]
    assert mode_coverage(near_two, centres, radius=1.0) == pytest.approx(2 / 3)
    assert mode_coverage(x, centres, radius=1.0) == pytest.approx(1.0)
    assert mode_coverage([[0.0], [2.0]], c1, radius=1.0) == pytest.approx(1.0)  # boundary counts
    assert mode_coverage([[0.0], [1.9]], c1, radius=1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        mode_weights(np.zeros((4, 3)), centres)
    with pytest.raises(ValueError, match=r"expected \(N, 2\)"):
        mode_weights(np.zeros(4), centres)
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        mode_weights(x1, c1, log_w=np.zeros(3))


# ---- split R-hat ----

def test_classic_rhat_matches_a_hand_computation():

    chains = np.array([[0.0, 1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0]])[:, :, None]
    # W = 5/3 (both chains), B/n = var(1.5, 3.5) = 2, var+ = 3/4 W + 2 = 3.25
    assert _classic_rhat(chains)[0] == pytest.approx(np.sqrt(3.25 / (5.0 / 3.0)), rel=1e-12)


def test_split_rhat_is_one_for_agreeing_chains_and_large_for_stuck_ones():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(128, 400, 3))
    assert split_rhat(iid).shape == (3,)
    assert split_rhat(iid).max() < 1.01
    stuck = iid.copy()
    stuck[:32, :, 0] += 4.0  # a quarter of the chains sit in another mode along x0
    rhat = split_rhat(stuck)
    assert rhat[0] > 1.3 and rhat[1:].max() < 1.01


def test_split_rhat_sees_trends_within_chains_and_spread_differences():
    rng = np.random.default_rng(1)
    drift = rng.normal(size=(8, 400)) + np.linspace(0.0, 6.0, 400)[None, :]

    assert _classic_rhat(drift[:, :, None])[0] < 1.05  # whole chains agree with each other ...
    assert split_rhat(drift)[0] > 1.3  # ... but the halves of each chain do not
    spread = rng.normal(size=(64, 400))
    spread[:32] *= 3.0  # same centre, different scale: only the folded statistic sees it
    assert split_rhat(spread)[0] > 1.1


def test_split_rhat_is_rank_based_and_checks_its_input():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 100, 2))
    x[:4] += 2.0
    np.testing.assert_allclose(split_rhat(np.exp(x)), split_rhat(x), rtol=1e-12)
    with pytest.raises(ValueError, match="at least 4 draws"):
        split_rhat(x[:, :3])
    with pytest.raises(ValueError, match="non-finite"):
        bad = x.copy()
        bad[0, 0, 0] = np.nan
        split_rhat(bad)


# Pins of the diagnostics merge (issue 17): the numbers below come from the code before the merge,
# md's integrated_autocorrelation_time (boltzflow.convergence), the reference sampler's
# integrated_autocorrelation_time and _split_rhat (boltzflow.targets.reference), and split_rhat.
def _ar_traces() -> np.ndarray:
    rng = np.random.default_rng(7)
    x = np.zeros((501, 4))
    e = rng.standard_normal((501, 4))
    for t in range(1, 501):
        x[t] = 0.9 * x[t - 1] + e[t]
    return x


def test_autocorrelation_time_pins_the_md_and_reference_sampler_numbers():
    tr = _ar_traces()
    unequal = np.concatenate([tr[:300, 0], tr[:501, 1], tr[:120, 2]])
    assert integrated_autocorrelation_time(unequal, [300, 501, 120]) == 18.416473948964786
    assert integrated_autocorrelation_time(tr.T.reshape(-1), [501] * 4) == 20.230703763631464
    # the reference sampler summed in another order: equal up to rounding
    assert integrated_autocorrelation_time(tr) == pytest.approx(20.230703763631467, rel=1e-12)
    assert integrated_autocorrelation_time(tr[:500]) == pytest.approx(20.276483233978766, rel=1e-12)
    assert convergence_diagnostics(tr)["tau_int"] == pytest.approx(20.230703763631467, rel=1e-12)
    assert convergence_diagnostics(tr[:3])["tau_int"] == 1.0
    assert convergence_diagnostics(np.ones((10, 2)))["tau_int"] == 1.0
    antithetic = np.tile(np.array([1.0, -1.0]), 5)[:, None].repeat(2, axis=1)
    assert convergence_diagnostics(antithetic)["tau_int"] == 0.1
    assert initial_positive_sequence_tau(np.array([1.0, 0.5, 0.2, 0.1, -0.3, 0.0])) == 2.6


def test_split_rhat_pins_the_reference_sampler_and_rank_normalised_numbers():
    tr = _ar_traces()
    assert convergence_diagnostics(tr)["rhat"] == pytest.approx(1.0650542361732114, rel=1e-12)
    assert convergence_diagnostics(tr[:500])["rhat"] == pytest.approx(1.0650542361732114, rel=1e-12)
    assert math.isnan(convergence_diagnostics(np.ones((10, 3)))["rhat"])
    assert math.isnan(convergence_diagnostics(tr[:3])["rhat"])
    assert split_rhat(tr.T).tolist() == [1.0629506318818374]
    assert split_rhat(tr.T[:, :-1]).tolist() == [1.0632647765197245]


def test_heldout_log_likelihood_is_the_mean_log_density_with_its_error():
    """On draws of N(0, I_d) under their own density the mean log q is -d/2 (log 2 pi + 1) (the
    negative entropy); frames without a density (-inf) are counted apart, NaN is refused."""
    d, n = 5, 4000
    x = np.random.default_rng(0).standard_normal((n, d))

    def normal(points):
        return -0.5 * (points ** 2).sum(dim=1) - 0.5 * d * math.log(2 * math.pi)

    out = heldout_log_likelihood(normal, x, batch_size=700)
    exact = -0.5 * d * (math.log(2 * math.pi) + 1)
    assert out["n_test_frames"] == n and out["test_log_q_finite"] == 1.0
    assert abs(out["test_log_q"] - exact) < 4 * out["test_log_q_se"] and 0.01 < out["test_log_q_se"] < 0.05
    # a narrower model has a lower mean log q on the same points: the forward KL ordering
    assert heldout_log_likelihood(lambda p: normal(2 * p) + d * math.log(2), x)["test_log_q"] < out["test_log_q"] - 1

    def outside_half(points):  # no density for x_0 > 1 (like a frame beyond a torsion cut)
        return torch.where(points[:, 0] > 1, -torch.inf, normal(points))

    cut = heldout_log_likelihood(outside_half, x)
    inside = x[:, 0] <= 1
    assert cut["test_log_q_finite"] == pytest.approx(inside.mean())
    assert cut["test_log_q"] == pytest.approx(normal(torch.as_tensor(x[inside])).mean().item())
    with pytest.raises(ValueError, match="4 NaN"):  # one in each batch of 1,000
        heldout_log_likelihood(lambda p: torch.where(p[:, 0] == p[0, 0], torch.nan, normal(p)), x)
    with pytest.raises(ValueError, match="shape"):
        heldout_log_likelihood(normal, x[0])
