"""The batched torch Langevin / parallel-tempering engine (boltzflow.md: torch_engine, tempering).

Statistical checks use analytic potentials, where the exact answer is known, and replicas that
are independent by construction: each check reduces a replica's (or a ladder's) trajectory to
one number, so the spread of those numbers over replicas gives an honest standard error (SE)
whatever the autocorrelation within a trajectory. Tolerances are 4 SE (seeds are fixed, so the
tests are deterministic; 4 SE keeps them meaningful should a seed or thread count change).
The alanine-dipeptide tests go through the OpenMM System path: output format, checkpoint and
resume, seeds and settings validation.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from boltzflow.io import read_sample_set
from boltzflow.md import (
    CHECKPOINT_NAME,
    BatchedLangevin,
    TorchMDSettings,
    geometric_ladder,
    reduced_energies,
    repartition_hydrogen_mass,
    run_parallel_tempering,
    system_masses,
)
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.units import kT_kJ_per_mol

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these tests are dominated by small ops, which a second OpenMP thread
    slows down badly when another process is busy on the same cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def harmonic(k: float):
    """Isotropic harmonic well U = k/2 |x|^2 (kJ/mol, nm)."""
    def energy_and_forces(x: torch.Tensor):
        return 0.5 * k * (x * x).sum(1), -k * x
    return energy_and_forces


def per_slot_mean_and_se(values: torch.Tensor, n_ladders: int, n_temperatures: int):
    """Mean over ladders and its standard error, for each slot, of one number per replica."""
    v = values.reshape(n_ladders, n_temperatures).double()
    return v.mean(0), v.std(0) / math.sqrt(n_ladders)


# --------------------------------------------------------------------------------------------
# Integrator on analytic potentials
# --------------------------------------------------------------------------------------------


def test_baoab_samples_the_harmonic_boltzmann_distribution():
    """3-D harmonic oscillators at two temperatures (no exchanges): configurational variance
    kT/k and kinetic temperature T, each within 4 SE. BAOAB samples the configurations of a
    harmonic well exactly; its kinetic temperature is off by O((omega dt)^2) ~ 1e-5 here."""
    k, m, temps, M = 100.0, 10.0, [300.0, 600.0], 128
    eng = BatchedLangevin(harmonic(k), [m], temps, dim=3, n_ladders=M, timestep_fs=2.0,
                          friction_per_ps=5.0, force_dtype=F64, seed=1)
    eng.set_positions(np.zeros(3))
    eng.draw_velocities()
    eng.run(1500)  # 3 ps, many relaxation times (1/gamma = 0.2 ps, 1/omega = 0.3 ps)
    x2, t_kin = torch.zeros(eng.n_replicas, dtype=F64), torch.zeros(eng.n_replicas, dtype=F64)
    n = 100
    for _ in range(n):
        eng.run(50)
        x2 += (eng.x ** 2).mean(1) / n
        t_kin += eng.kinetic_temperature() / n
    var_mean, var_se = per_slot_mean_and_se(x2, M, 2)
    t_mean, t_se = per_slot_mean_and_se(t_kin, M, 2)
    for slot, temp in enumerate(temps):
        expected = kT_kJ_per_mol(temp) / k
        assert var_se[slot] < 0.03 * expected  # the test has the power to see a few-% error
        assert abs(var_mean[slot] - expected) < 4 * var_se[slot], (slot, var_mean[slot], expected, var_se[slot])
        assert t_se[slot] < 0.03 * temp
        assert abs(t_mean[slot] - temp) < 4 * t_se[slot], (slot, t_mean[slot], t_se[slot])


def test_exchange_swaps_configurations_forces_and_rescales_velocities():
    eng = BatchedLangevin(harmonic(1.0), [1.0], [300.0, 600.0], dim=3, n_ladders=2, force_dtype=F64)
    start = torch.tensor([[3.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]], dtype=F64)
    eng.set_positions(start)
    eng.v.copy_(torch.arange(12, dtype=F64).reshape(4, 3) + 1)
    v0 = eng.v.clone()
    # ladder 0: slot 0 (cold) has the higher energy -> (beta_0 - beta_1)(U_0 - U_1) > 0: always
    # swapped; ladder 1: acceptance exp(-(beta_0 - beta_1) 4) = 0.46, decided by the draw
    accepted = eng.exchange()
    assert accepted.shape == (2, 1) and bool(accepted[0, 0])
    torch.testing.assert_close(eng.x[:2], start[[1, 0]])
    torch.testing.assert_close(eng.forces[:2], -start[[1, 0]])
    torch.testing.assert_close(eng.energy[:2], 0.5 * (start[[1, 0]] ** 2).sum(1))
    torch.testing.assert_close(eng.v[0], v0[1] * math.sqrt(300.0 / 600.0))
    torch.testing.assert_close(eng.v[1], v0[0] * math.sqrt(600.0 / 300.0))
    swapped = bool(accepted[1, 0])
    torch.testing.assert_close(eng.x[2:], start[[3, 2]] if swapped else start[2:])
    assert eng.swap_attempts.tolist() == [[1], [1]] and eng.swap_accepts[0, 0] == 1
    assert eng.exchange().shape == (2, 0)  # odd round: no pair with two temperatures
    assert eng.swap_attempts.sum() == 2


def expected_swap_acceptance(d: int, t_i: float, t_j: float) -> float:
    """E[min(1, exp((b_i - b_j)(U_i - U_j)))] for independent U_i ~ Gamma(d/2, scale kT_i) and
    U_j ~ Gamma(d/2, scale kT_j), the potential energies of d-dimensional harmonic oscillators,
    with T_i < T_j. Given U_j, the inner expectation over U_i is closed-form,
    ``1 - F_i(U_j) + exp(-(b_i - b_j) U_j) (kT_j / kT_i)^(d/2) F_j(U_j)`` with F the Gamma CDFs
    (because exp((b_i - b_j) u) times the Gamma(d/2, kT_i) density is (kT_j / kT_i)^(d/2) times the
    Gamma(d/2, kT_j) density); the outer one is a 1-D quadrature."""
    from scipy import integrate, stats

    a, kt_i, kt_j = d / 2, kT_kJ_per_mol(t_i), kT_kJ_per_mol(t_j)
    db = 1 / kt_i - 1 / kt_j
    cold, hot = stats.gamma(a, scale=kt_i), stats.gamma(a, scale=kt_j)

    def inner(u):
        return cold.sf(u) + np.exp(-db * u) * (kt_j / kt_i) ** a * hot.cdf(u)

    value, error = integrate.quad(lambda u: inner(u) * hot.pdf(u), 0, np.inf, limit=200)
    assert error < 1e-6
    return value


def test_swap_acceptance_matches_the_harmonic_prediction():
    """d = 30 harmonic oscillators on a 4-temperature ladder: the measured acceptance of each
    neighbour pair equals E[min(1, exp(dbeta dU))] over the exact Gamma energy distributions,
    within 4 SE (SE from the spread of the per-ladder rates), and every slot keeps its own mean
    energy d/2 kT."""
    d, M, temps = 30, 64, [300.0, 360.0, 450.0, 600.0]
    k = 100.0
    eng = BatchedLangevin(harmonic(k), np.full(d, 10.0), temps, n_ladders=M, timestep_fs=2.0,
                          friction_per_ps=5.0, force_dtype=F64, seed=3)
    eng.set_positions(np.zeros(d))
    eng.draw_velocities()
    for _ in range(30):  # 3 ps of equilibration with exchanges
        eng.run(50)
        eng.exchange()
    eng.swap_attempts.zero_()
    eng.swap_accepts.zero_()
    energy, n = torch.zeros(eng.n_replicas, dtype=F64), 240
    for _ in range(n):
        eng.run(50)
        eng.exchange()
        energy += eng.energy / n
    rates = (eng.swap_accepts / eng.swap_attempts).double()  # (M, K-1)
    assert int(eng.swap_attempts[0, 0]) == n // 2
    for pair in range(3):
        expected = expected_swap_acceptance(d, temps[pair], temps[pair + 1])
        measured, se = rates[:, pair].mean().item(), rates[:, pair].std().item() / math.sqrt(M)
        assert 0.1 < expected < 0.9 and se < 0.02
        assert abs(measured - expected) < 4 * se, (pair, measured, expected, se)
    e_mean, e_se = per_slot_mean_and_se(energy, M, 4)
    for slot, temp in enumerate(temps):
        assert abs(e_mean[slot] - d / 2 * kT_kJ_per_mol(temp)) < 4 * e_se[slot]


def double_well(h: float, tilt: float):
    """U(x) = h (x^2 - 1)^2 + tilt x in one dimension (kJ/mol, nm)."""
    def energy_and_forces(x: torch.Tensor):
        s = x * x - 1.0
        return (h * s * s + tilt * x).sum(1), -(4.0 * h * s * x + tilt)
    return energy_and_forces


def test_parallel_tempering_crosses_a_high_barrier_that_plain_langevin_cannot():
    """1-D double well, barrier 25 kJ/mol (10 kT at 300 K), tilted so the right well holds ~77%.
    All replicas start in the left well. With an 8-temperature ladder up to 3000 K (barrier
    1 kT at the top), slot 0 reproduces the exact left-well population (quadrature) within 4 SE
    over 64 ladders; plain Langevin at 300 K for the same number of steps stays in the left well.
    (With the ladder topped at 2000 K instead, 10 ps of equilibration does not forget the start:
    the estimate stays ~0.03 high, which a run with 256 ladders resolves at 6 SE.)"""
    h, tilt, T0 = 25.0, -1.5, 300.0
    grid = np.linspace(-2.5, 2.5, 200_001)
    boltz = np.exp(-(h * (grid ** 2 - 1) ** 2 + tilt * grid) / kT_kJ_per_mol(T0))
    exact_left = boltz[grid < 0].sum() / boltz.sum()
    assert 0.15 < exact_left < 0.35

    def left_fraction(temps, n_ladders, seed):
        eng = BatchedLangevin(double_well(h, tilt), [2.0], temps, n_ladders=n_ladders, timestep_fs=2.0,
                              friction_per_ps=5.0, force_dtype=F64, seed=seed)
        eng.set_positions([-1.0])
        eng.draw_velocities()
        K, n_eq, n_prod = len(temps), 500, 2000  # rounds of 10 steps (0.02 ps): 10 ps + 40 ps
        left = torch.zeros(n_ladders, dtype=F64)
        for i in range(n_eq + n_prod):
            eng.run(10)
            if K > 1:
                eng.exchange()
            if i >= n_eq:
                left += (eng.x.reshape(n_ladders, K)[:, 0] < 0).double() / n_prod
        return left, eng

    left, eng = left_fraction(geometric_ladder(T0, 3000.0, 8), 64, seed=7)
    pt_mean, pt_se = left.mean().item(), left.std().item() / math.sqrt(64)
    assert np.all(eng.swap_acceptance() > 0.5)
    assert pt_se < 0.015
    assert abs(pt_mean - exact_left) < 4 * pt_se, (pt_mean, exact_left, pt_se)
    stuck, _ = left_fraction([T0], 32, seed=7)
    assert stuck.mean().item() > 0.95  # plain Langevin never left the starting well


def test_noise_and_state_are_reproducible_from_the_seed():
    def trajectory(seed):
        eng = BatchedLangevin(harmonic(50.0), [5.0], [300.0, 400.0], dim=3, n_ladders=3, seed=seed)
        eng.set_positions(np.ones(3))
        eng.draw_velocities()
        eng.run(20)
        eng.exchange()
        return eng

    a, b, c = trajectory(0), trajectory(0), trajectory(1)
    assert torch.equal(a.x, b.x) and torch.equal(a.v, b.v) and not torch.equal(a.x, c.x)
    # state_dict round trip: continuing a restored copy is bitwise the original's continuation
    restored = trajectory(5)
    restored.load_state_dict(a.state_dict())
    a.run(30)
    restored.run(30)
    assert torch.equal(a.x, restored.x) and torch.equal(a.v, restored.v)


def test_blow_up_is_reported_with_step_and_count():
    eng = BatchedLangevin(harmonic(1.0), [1.0], [300.0], dim=3, n_ladders=4, force_dtype=F64)
    eng.set_positions(np.zeros(3))
    eng.energy[1:3] = float("nan")
    with pytest.raises(FloatingPointError, match=r"2 of 4 replicas at step 17"):
        eng.check_finite(17)


# --------------------------------------------------------------------------------------------
# Masses
# --------------------------------------------------------------------------------------------


def test_hydrogen_mass_repartitioning(al2):
    plain = system_masses(al2.system)
    hmr = system_masses(al2.system, al2.topology, hydrogen_mass=3.0)
    from_bonds = system_masses(al2.system, hydrogen_mass=3.0)  # no topology: bonds and masses
    is_h = np.array([a.element.symbol == "H" for a in al2.topology.atoms()])
    assert is_h.sum() == 12
    assert hmr.sum() == pytest.approx(plain.sum(), rel=1e-12)
    np.testing.assert_allclose(hmr[is_h], 3.0)
    np.testing.assert_array_equal(hmr, from_bonds)
    # a methyl carbon gives 3 x (3 - 1.008) amu
    carbon = [b.atom1.index if is_h[b.atom2.index] else b.atom2.index for b in al2.topology.bonds()
              if is_h[b.atom1.index] != is_h[b.atom2.index]]
    heavy, counts = np.unique(carbon, return_counts=True)
    np.testing.assert_allclose(hmr[heavy], plain[heavy] - counts * (3.0 - plain[is_h][0]))
    with pytest.raises(ValueError, match="mass"):
        repartition_hydrogen_mass(plain, [(0, 1), (1, 2)], np.array([True, False, True]), 20.0)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def test_settings_arithmetic_and_ladder():
    s = TorchMDSettings(timestep_fs=2.0, n_ladders=3, n_temperatures=4, max_temperature_K=600.0,
                        exchange_interval_ps=0.1, equilibration_ps=1.0, length_ps=10.0, save_interval_ps=0.5)
    assert (s.steps_per_frame, s.exchange_steps, s.equilibration_steps, s.n_frames) == (250, 50, 500, 20)
    assert s.total_steps == 500 + 20 * 250 and s.n_replicas == 12
    np.testing.assert_allclose(s.ladder(), 300.0 * 2.0 ** (np.arange(4) / 3))
    explicit = TorchMDSettings.from_config({"n_temperatures": 3, "temperatures_K": [300, 350, 420],
                                            "source": "torch", "replicas": 4})
    assert explicit.temperatures_K == (300, 350, 420)
    np.testing.assert_array_equal(explicit.ladder(), [300.0, 350.0, 420.0])


@pytest.mark.parametrize("config, field", [
    ({"timestep_fs": -1.0}, "timestep_fs"),
    ({"friction_per_ps": -1.0}, "friction_per_ps"),
    ({"n_ladders": 0}, "n_ladders"),
    ({"n_temperatures": 2.5}, "n_temperatures"),
    ({"n_temperatures": 4}, "max_temperature_K"),
    ({"n_temperatures": 2, "max_temperature_K": 250.0}, "max_temperature_K"),
    ({"n_temperatures": 2, "temperatures_K": [310.0, 400.0]}, "temperatures_K"),
    ({"n_temperatures": 3, "temperatures_K": [300.0, 400.0]}, "temperatures_K"),
    ({"n_temperatures": 2, "max_temperature_K": 400.0, "exchange_interval_ps": 0.003}, "exchange_interval_ps"),
    ({"save_interval_ps": 0.003}, "save_interval_ps"),
    ({"length_ps": 0.5, "save_interval_ps": 1.0}, "length_ps"),
    ({"hydrogen_mass_amu": 0.0}, "hydrogen_mass_amu"),
    ({"dtype": "float16"}, "dtype"),
    ({"device": "tpu"}, "device"),
    ({"compile": "yes"}, "compile"),
    ({"seed": -3}, "seed"),
    ({"temperature_K": "300"}, "temperature_K"),
    ({"save_all_temperatures": 1}, "save_all_temperatures"),
])
def test_bad_settings_name_the_field(config, field):
    with pytest.raises(ValueError, match=field):
        TorchMDSettings.from_config(config)


# --------------------------------------------------------------------------------------------
# Alanine dipeptide through the System path
# --------------------------------------------------------------------------------------------

# 4 ladders x 2 temperatures, 0.1 ps equilibration + 0.4 ps production at 2 fs: 250 steps
AL2 = dict(n_ladders=4, n_temperatures=2, max_temperature_K=400.0, exchange_interval_ps=0.02,
           equilibration_ps=0.1, length_ps=0.4, save_interval_ps=0.1, checkpoint_interval_ps=0.2,
           compile=False)


@pytest.fixture(scope="module")
def al2_run(al2, tmp_path_factory):
    """One uninterrupted reference run (seed 0) shared by the al2 tests."""
    folder = tmp_path_factory.mktemp("torch_md")
    summary = run_parallel_tempering(al2.system, al2.positions, TorchMDSettings(**AL2), folder / "straight.parquet",
                                     folder / "ck", target="al2", topology=al2.topology)
    return summary, read_sample_set(folder / "straight.parquet", expected_dim=66, expected_target="al2"), folder


def test_al2_run_writes_a_frames_sample_set(al2, al2_run):
    summary, frames, folder = al2_run
    assert len(frames) == 4 * 4 and frames.x.dtype == np.float32 and frames.energy.dtype == np.float64
    assert not (folder / "ck").exists()  # the checkpoint is removed once the output exists
    cols = frames.columns
    assert cols["replica"].dtype == np.int32 and cols["time_ps"].dtype == np.float64
    assert "temperature_K" not in cols
    np.testing.assert_array_equal(cols["replica"], np.repeat(np.arange(4), 4))
    np.testing.assert_allclose(cols["time_ps"], np.tile([0.1, 0.2, 0.3, 0.4], 4))
    assert np.isfinite(frames.energy).all() and frames.energy.std() > 0.5
    # energy = U(x) / kT0 of the stored float32 coordinates, as the force field and OpenMM give it
    ff = TorchForceField(al2.system, compile=False)
    u = ff(torch.from_numpy(frames.x.copy())).double().numpy() / kT_kJ_per_mol(300.0)
    np.testing.assert_allclose(frames.energy, u, rtol=1e-5, atol=1e-4)
    ref = reduced_energies(al2.system, 300.0, frames.x.reshape(-1, 22, 3).astype(np.float64))
    np.testing.assert_allclose(frames.energy, ref, atol=0.05)
    meta = frames.metadata
    assert meta["engine"] == "torch" and meta["temperatures_K"] == [300.0, 400.0]
    assert len(meta["swap_acceptance"]) == 1 and 0.0 <= meta["swap_acceptance"][0] <= 1.0
    assert meta["swap_attempts"] == [4 * 13]  # 25 exchange rounds; the 13 even ones try pair (0, 1)
    assert meta["hydrogen_mass_amu"] == 3.0 and meta["timestep_fs"] == 2.0 and meta["dtype"] == "float32"
    assert meta["ns_per_day"] > 0 and meta["md"]["seed"] == 0 and summary["finished"]


def test_al2_resume_after_a_kill_is_bitwise_identical(al2, al2_run, tmp_path, caplog):
    _, straight, _ = al2_run
    settings = TorchMDSettings(**AL2)
    out, ck = tmp_path / "resumed.parquet", tmp_path / "ck"
    # stop (as if killed) 30 steps after the first checkpoint at step 100
    stopped = run_parallel_tempering(al2.system, al2.positions, settings, out, ck, target="al2",
                                     topology=al2.topology, max_steps=130)
    assert not stopped["finished"] and (ck / CHECKPOINT_NAME).exists() and not out.exists()
    with caplog.at_level(logging.INFO, logger="boltzflow.torch_md"):
        summary = run_parallel_tempering(al2.system, al2.positions, settings, out, ck, target="al2",
                                         topology=al2.topology)
    assert "resuming from checkpoint at step 100/250" in caplog.text and summary["resumed_from_step"] == 100
    resumed = read_sample_set(out)
    np.testing.assert_array_equal(resumed.x, straight.x)
    np.testing.assert_array_equal(resumed.energy, straight.energy)
    assert resumed.metadata["swap_attempts"] == straight.metadata["swap_attempts"]
    assert resumed.metadata["swap_acceptance"] == straight.metadata["swap_acceptance"]


def test_al2_seed_and_foreign_checkpoint(al2, al2_run, tmp_path, caplog):
    _, straight, _ = al2_run
    ck = tmp_path / "ck"
    run_parallel_tempering(al2.system, al2.positions, TorchMDSettings(**AL2), tmp_path / "a.parquet", ck,
                           target="al2", topology=al2.topology, max_steps=120)
    with caplog.at_level(logging.WARNING, logger="boltzflow.torch_md"):
        run_parallel_tempering(al2.system, al2.positions, TorchMDSettings(**{**AL2, "seed": 1}),
                               tmp_path / "b.parquet", ck, target="al2", topology=al2.topology)
    assert "made with other settings; starting from scratch" in caplog.text
    other = read_sample_set(tmp_path / "b.parquet")
    assert other.x.shape == straight.x.shape and not np.allclose(other.x, straight.x)
    # a corrupt checkpoint is not fatal either
    ck.mkdir()
    (ck / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="boltzflow.torch_md"):
        run_parallel_tempering(al2.system, al2.positions, TorchMDSettings(**AL2), tmp_path / "c.parquet", ck,
                               target="al2", topology=al2.topology)
    assert "is unreadable" in caplog.text
    np.testing.assert_array_equal(read_sample_set(tmp_path / "c.parquet").x, straight.x)


def test_al2_save_all_temperatures_and_float64(al2, tmp_path):
    s = TorchMDSettings(**{**AL2, "save_all_temperatures": True, "dtype": "float64", "hydrogen_mass_amu": None,
                           "timestep_fs": 1.0, "length_ps": 0.2})
    run_parallel_tempering(al2.system, al2.positions, s, tmp_path / "all.parquet", tmp_path / "ck", target="al2")
    frames = read_sample_set(tmp_path / "all.parquet")
    assert len(frames) == 4 * 2 * 2
    cols = frames.columns
    np.testing.assert_array_equal(cols["temperature_K"], np.tile(np.repeat([300.0, 400.0], 2), 4))
    np.testing.assert_array_equal(cols["replica"], np.repeat(np.arange(4), 4))
    np.testing.assert_allclose(cols["time_ps"], np.tile([0.1, 0.2], 8))
    assert frames.metadata["dtype"] == "float64" and frames.metadata["hydrogen_mass_amu"] is None


def test_al2_blow_up_raises(al2, tmp_path):
    s = TorchMDSettings(**{**AL2, "timestep_fs": 50.0, "hydrogen_mass_amu": None, "exchange_interval_ps": 1.0,
                           "equilibration_ps": 10.0, "length_ps": 10.0, "save_interval_ps": 5.0,
                           "checkpoint_interval_ps": 10.0})
    with pytest.raises(FloatingPointError, match=r"non-finite potential energy in \d+ of 8 replicas at step \d+"):
        run_parallel_tempering(al2.system, al2.positions, s, tmp_path / "x.parquet", tmp_path / "ck", target="al2")
    assert not (tmp_path / "x.parquet").exists()


def test_al2_plain_langevin_and_throughput(al2, tmp_path):
    s = TorchMDSettings(n_ladders=2, equilibration_ps=0.0, length_ps=0.2, save_interval_ps=0.1,
                        checkpoint_interval_ps=1.0, compile=False, seed=4)
    summary = run_parallel_tempering(al2.system, al2.positions, s, tmp_path / "p.parquet", tmp_path / "ck",
                                     target="al2", metadata={"rule": "test"}, replica_offset=6)
    frames = read_sample_set(tmp_path / "p.parquet")
    assert len(frames) == 4 and summary["swap_acceptance"] == [] and summary["temperatures_K"] == [300.0]
    np.testing.assert_array_equal(frames.columns["replica"], [6, 6, 7, 7])
    assert frames.metadata["rule"] == "test" and not summary["compiled"]
    from boltzflow.md import measure_throughput

    r = measure_throughput(al2.system, al2.positions, 4, steps=3, warmup=1)
    assert r["steps_per_s"] > 0 and r["ns_per_day"] == pytest.approx(4 * r["ns_per_day_per_replica"])
