"""Pieces of the benchmarks that carry statistics: the plain-dynamics correlation estimate."""

from __future__ import annotations

import numpy as np
import pytest
from boltzflow.bench import plain_dynamics_correlation


def _two_state_chain(frames: int, replicas: int, a: float, b: float, seed: int) -> np.ndarray:
    """phi-like values (+1 / -1) of stationary two-state Markov chains: 0 -> 1 with probability a,
    1 -> 0 with probability b per frame."""
    rng = np.random.default_rng(seed)
    state = rng.random(replicas) < a / (a + b)  # start in equilibrium
    out = np.empty((frames, replicas))
    for t in range(frames):
        out[t] = np.where(state, 1.0, -1.0)
        u = rng.random(replicas)
        state = np.where(state, u >= b, u < a)
    return out


def test_correlation_time_of_a_two_state_chain():
    """For a two-state chain the indicator's integrated autocorrelation time is (1 + l) / (1 - l)
    with l = 1 - a - b, and the population is a / (a + b)."""
    a, b = 0.002, 0.05
    phi = _two_state_chain(400, 2000, a, b, seed=0)
    result = plain_dynamics_correlation(phi)
    lam = 1 - a - b
    assert result["phi_positive"] == pytest.approx(a / (a + b), rel=0.1)
    assert result["tau_ps"] == pytest.approx((1 + lam) / (1 - lam), rel=0.15)
    assert result["entries"] > 0


def test_correlation_time_is_truncated_by_short_windows():
    """Trajectories much shorter than the correlation time give a lower bound, never more."""
    a, b = 0.0005, 0.002  # tau ~ 800 frames
    phi = _two_state_chain(60, 3000, a, b, seed=1)
    result = plain_dynamics_correlation(phi)
    assert result["tau_ps"] <= 61


def test_no_visits_give_nan():
    result = plain_dynamics_correlation(-np.ones((10, 4)))
    assert result["phi_positive"] == 0.0 and np.isnan(result["tau_ps"]) and result["entries"] == 0
