"""Parallel-tempering reference samples: API, centre of mass, energy ranges, determinism,
correctness on a target with an exact answer, and the convergence flag.

Runs here are short versions of the defaults (the full-size runs are timed by hand; see
``boltzflow.mcmc.reference``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from boltzflow.evaluation import integrated_autocorrelation_time
from boltzflow.mcmc import (
    convergence_diagnostics,
    reference_samples,
)
from boltzflow.targets import load_target


def check_common(target, samples, diag, n):
    assert samples.shape == (n, target.dim) and samples.dtype == np.float64
    assert np.isfinite(samples).all()
    energies = target.energy(torch.from_numpy(samples)).numpy()
    np.testing.assert_allclose(diag["energies"], energies, rtol=1e-9, atol=1e-9)
    k = len(diag["temperatures"])
    assert diag["temperatures"][0] == pytest.approx(1.0)
    assert len(diag["acceptance"]) == k and all(0 < a < 1 for a in diag["acceptance"])
    assert len(diag["swap_acceptance"]) == k - 1 and all(0 < a < 1 for a in diag["swap_acceptance"])
    assert diag["chain"].shape == (n,) and diag["step"].shape == (n,)
    for key in ("z_halves", "z_groups", "ks_halves", "ks_critical", "rhat", "ess", "tau_int", "time_s"):
        assert math.isfinite(diag[key])
    assert isinstance(diag["converged"], bool) and set(diag["checks"]) >= {"z_halves", "rhat"}
    return energies


def com(target, samples):
    return samples.reshape(len(samples), target.n_particles, target.spatial_dim).mean(1)


def test_dw4_short_run():
    t = load_target("dw4")
    x, d = reference_samples(t, 1024, n_chains=32, burn_in=500, thin=5, log=None)
    e = check_common(t, x, d, 1024)
    assert np.abs(com(t, x)).max() < 1e-12
    assert e.min() > -27.0 and e.max() < 0.0
    assert -24.0 < e.mean() < -21.0  # the long default run gives -22.5 +- 1.9 (std)
    assert d["move"] == "mala" and d["converged"]


def test_lj13_short_run():
    t = load_target("lj13")
    x, d = reference_samples(t, 320, n_chains=16, n_temperatures=2, t_max=1.5, burn_in=150,
                             thin=2, n_leapfrog=5, log=None)
    e = check_common(t, x, d, 320)
    assert d["move"] == "hmc"
    assert np.abs(com(t, x)).max() < 1e-12
    assert e.min() > -75.0 and e.max() < 0.0
    assert -50.0 < e.mean() < -36.0  # the long default run gives -43.0 +- 7.0 (std)


def test_deterministic_given_seed():
    t = load_target("dw4")
    kw = dict(n_chains=8, n_temperatures=3, burn_in=50, thin=2, log=None)
    a, da = reference_samples(t, 64, seed=3, **kw)
    b, db = reference_samples(t, 64, seed=3, **kw)
    c, _ = reference_samples(t, 64, seed=4, **kw)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(da["energies"], db["energies"])
    assert not np.array_equal(a, c)


def mode_fractions(x: np.ndarray) -> np.ndarray:
    """Fraction of samples nearest to each mean of mixture2d_weights (x = -3, -1, 1, 3)."""
    idx = np.digitize(x[:, 0], [-2.0, 0.0, 2.0])
    return np.bincount(idx, minlength=4) / len(x)


@pytest.mark.parametrize("move", ["mala", "rwm"])
def test_matches_exact_sampler_on_mixture(move):
    """PT recovers the mode weights (0.1, 0.2, 0.3, 0.4) of four modes separated by
    barriers of ~10 kT. Tolerance: 5 standard errors of the mode fractions, estimated from the
    spread of the per-chain fractions (chains are independent), and at most 0.03 absolute."""
    t = load_target("mixture2d_weights")
    n_chains = 128
    x, d = reference_samples(t, n_chains * 150, n_chains=n_chains, burn_in=500, thin=5,
                             move=move, log=None)
    check_common(t, x, d, len(x))
    frac = mode_fractions(x)
    per_chain = np.stack([mode_fractions(x[d["chain"] == c]) for c in range(n_chains)])
    se = per_chain.std(0, ddof=1) / math.sqrt(n_chains)
    w = t.weights.numpy()
    assert np.all(np.abs(frac - w) < np.minimum(5 * se + 1e-3, 0.03)), (frac, w, se)
    # within-mode spread: variance 0.05 in both directions (mode-nearest, tolerance 10 %)
    centred = x - t.means.numpy()[np.digitize(x[:, 0], [-2.0, 0.0, 2.0])]
    np.testing.assert_allclose(centred.var(0), [0.05, 0.05], rtol=0.1)
    # and the energy distribution agrees with exact samples (KS on the energies)
    exact = t.sample(20_000, generator=torch.Generator().manual_seed(0))
    e_exact = np.sort(t.energy(exact).numpy())
    e_pt = np.sort(d["energies"])
    grid = np.concatenate([e_exact, e_pt])
    ks = np.max(np.abs(np.searchsorted(e_exact, grid, "right") / len(e_exact)
                       - np.searchsorted(e_pt, grid, "right") / len(e_pt)))
    assert ks < 0.04
    assert d["converged"]


def test_stuck_chains_are_flagged():
    """Without tempering, chains started in two different modes never meet: the chain-group
    test must fail, and ``strict=True`` must raise."""
    t = load_target("mixture2d_weights")
    init = np.zeros((32, 2))
    init[:16, 0], init[16:, 0] = -3.0, 3.0
    kw = dict(n_chains=32, n_temperatures=1, burn_in=200, thin=2, init=init, log=None)
    _, d = reference_samples(t, 640, **kw)
    assert not d["converged"] and not d["checks"]["z_groups"]
    with pytest.raises(RuntimeError, match="z_groups"):
        reference_samples(t, 640, strict=True, **kw)


def test_accepts_a_name_and_validates():
    x, d = reference_samples("dw4", 16, n_chains=4, n_temperatures=2, burn_in=10, thin=1, log=None)
    assert x.shape == (16, 8) and d["target"] == "dw4"
    t = load_target("dw4")
    with pytest.raises(ValueError):
        reference_samples(t, 10, move="gibbs", log=None)
    with pytest.raises(ValueError):
        reference_samples(t, 10, n_temperatures=3, t_max=0.5, log=None)
    with pytest.raises(ValueError):
        reference_samples(t, 10, n_chains=4, init=np.zeros((3, 8)), log=None)


def test_convergence_statistics_on_iid_and_drifting_traces():
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(200, 64))
    s = convergence_diagnostics(iid)
    assert all(s["checks"].values())
    assert 0.5 < integrated_autocorrelation_time(iid) < 1.5
    drift = iid + np.linspace(0, 2, 200)[:, None]
    assert not convergence_diagnostics(drift)["checks"]["z_halves"]
    ar = np.zeros((2000, 16))  # AR(1) with rho 0.9: tau = (1 + rho) / (1 - rho) = 19
    noise = rng.normal(size=ar.shape)
    for i in range(1, len(ar)):
        ar[i] = 0.9 * ar[i - 1] + noise[i]
    assert 14 < integrated_autocorrelation_time(ar) < 24
