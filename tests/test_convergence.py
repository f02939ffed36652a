"""Convergence report of MD data: basin boxes, block bootstrap, halves/drift tests, the rule script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from boltzflow.evaluation import (
    PHI_POSITIVE,
    ROW_STATES,
    STATES,
    conformational_states,
    integrated_autocorrelation_time,
    phi_positive,
    state_mask,
)
from boltzflow.md import (
    bootstrap_population,
    convergence_curves,
    convergence_report,
    halves_agreement,
    populations_vs_time,
    state_populations,
)

ROOT = Path(__file__).resolve().parents[1]

# One (phi, psi) in degrees well inside each basin, to turn state sequences into dihedrals.
CENTRES = {"alpha_R": (-70.0, -40.0), "beta": (-150.0, 150.0), "alpha_L": (60.0, 40.0), "C7ax": (70.0, -60.0)}


def markov(rng, transition, n_chains, n_frames, start=None):
    """State codes (n_chains, n_frames) of a Markov chain; starts from ``start`` or stationary."""
    transition = np.asarray(transition, dtype=np.float64)
    if start is None:
        w, v = np.linalg.eig(transition.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1.0))])
        pi = pi / pi.sum()
        s = rng.choice(len(pi), size=n_chains, p=pi)
    else:
        s = np.full(n_chains, start)
    cum = np.cumsum(transition, axis=1)
    u = rng.random((n_chains, n_frames))
    out = np.empty((n_chains, n_frames), dtype=np.int64)
    for t in range(n_frames):
        out[:, t] = s
        s = np.minimum((u[:, t, None] > cum[s]).sum(axis=1), len(cum) - 1)
    return out


def fake_dataset(codes, names=("alpha_R", "beta", "alpha_L", "C7ax"), residue="ALA2", dt_ps=1.0):
    """Frames columns (replica, time_ps, energy) and a dihedral table for state codes (C, N)."""
    codes = np.asarray(codes)
    c, n = codes.shape
    labels = np.asarray(names)[codes.ravel()]
    phi = np.radians([CENTRES[s][0] for s in labels])
    psi = np.radians([CENTRES[s][1] for s in labels])
    frames = pd.DataFrame({
        "energy": np.zeros(c * n),
        "replica": np.repeat(np.arange(c, dtype=np.int32), n),
        "time_ps": np.tile((np.arange(n) + 1.0) * dt_ps, c),
    })
    dihedrals = pd.DataFrame({"frame": np.arange(c * n), f"phi_{residue}": phi, f"psi_{residue}": psi})
    return frames, dihedrals


# --------------------------------------------------------------------------- basins

BOXES = [  # phi, psi (degrees), expected state
    (-70, -40, "alpha_R"), (-150, 150, "beta"), (60, 40, "alpha_L"), (70, -60, "C7ax"),
    (0, 0, "alpha_R"), (0, 50, "alpha_R"), (0, 50.01, "beta"), (-60, -120, "beta"),
    (-60, -119.99, "alpha_R"), (0.01, 0, "alpha_L"), (0.01, -0.01, "C7ax"), (-0.01, -0.01, "alpha_R"),
    # the +-180 wrap: -180 is read as +180
    (180, 10, "alpha_L"), (-180, 10, "alpha_L"), (-180, -10, "C7ax"), (-60, 180, "beta"),
    (-60, -180, "beta"), (90, -180, "alpha_L"), (-179.99, 10, "alpha_R"),
    # outside (-180, 180]: wrapped first
    (-60, 190, "beta"), (200, -45, "alpha_R"), (-200, -45, "C7ax"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_state_boxes_edges_and_wrap(dtype):
    phi, psi, expected = zip(*BOXES)
    table = pd.DataFrame({"frame": np.arange(len(BOXES)),
                          "phi_ALA2": np.radians(phi).astype(dtype), "psi_ALA2": np.radians(psi).astype(dtype)})
    states = conformational_states(table)
    assert list(states.columns) == ["state_ALA2"]
    assert list(states["state_ALA2"].cat.categories) == list(STATES)
    got = states["state_ALA2"].astype(str).tolist()
    wrong = [(b, g) for b, g in zip(BOXES, got) if b[2] != g]
    assert not wrong
    positive = phi_positive(table)["phi_positive_ALA2"].to_numpy()
    np.testing.assert_array_equal(positive, np.isin(got, ["alpha_L", "C7ax"]))


def test_states_for_every_residue_with_phi_and_psi_only():
    table = pd.DataFrame({"frame": [0], "psi_ACE1": [0.1], "phi_ALA2": [-1.0], "psi_ALA2": [-0.7],
                          "phi_ALA3": [1.0], "psi_ALA3": [-1.0], "phi_NME4": [1.0]})
    states = conformational_states(table)
    assert list(states.columns) == ["state_ALA2", "state_ALA3"]
    assert states.iloc[0].astype(str).tolist() == ["alpha_R", "C7ax"]


def test_states_refuse_missing_pairs_and_nan():
    with pytest.raises(ValueError, match="no residue with both phi"):
        conformational_states(pd.DataFrame({"frame": [0], "phi_ALA2": [0.0]}))
    with pytest.raises(ValueError, match="'psi_ALA2' has 1 non-finite"):
        conformational_states(pd.DataFrame({"phi_ALA2": [0.0, 1.0], "psi_ALA2": [np.nan, 1.0]}))
    # a state given as a box reads its angles by the same rule, and says the same
    with pytest.raises(ValueError, match="dihedral column 'phi_ALA2' has 1 non-finite"):
        state_mask(pd.DataFrame({"phi_ALA2": [np.nan, 1.0], "psi_ALA2": [0.0, 1.0]}),
                   {"phi": [0, 180], "psi": [-180, 180]})


# --------------------------------------------------------------------------- bootstrap


def test_block_bootstrap_covers_truth_and_iid_bootstrap_does_not():
    """100 independent data sets of 4 chains x 3000 frames of a two-state Markov chain.

    P(0 -> 1) = a, P(1 -> 0) = b: stationary p1 = a / (a + b) = 0.3 and integrated autocorrelation
    time (1 + l) / (1 - l) = 49 frames with l = 1 - a - b. A 95 % interval covers p1 in a
    Binomial(100, 0.95) number of sets: >= 85 is more than 4 standard deviations from 95 only if
    the true coverage is below about 0.85 (measured with other seeds: 90-95). The iid bootstrap
    is too narrow by about sqrt(49) = 7 and covers p1 only ~20 % of the time.
    """
    a, b = 0.012, 0.028
    truth, tau_true = a / (a + b), (2 - a - b) / (a + b)
    rng = np.random.default_rng(1)
    codes = markov(rng, [[1 - a, a], [b, 1 - b]], n_chains=100 * 4, n_frames=3000).reshape(100, 4, 3000)
    replica = np.repeat(np.arange(4), 3000)
    time_ps = np.tile(np.arange(3000.0), 4)
    covered = {"block": 0, "iid": 0}
    taus = []
    for r in range(100):
        x = codes[r].ravel().astype(np.float64)
        res = bootstrap_population(x, replica, time_ps, n_boot=400, seed=r)
        taus.append(res["tau_frames"])
        covered["block"] += res["ci_low"] <= truth <= res["ci_high"]
        iid = bootstrap_population(x, replica, time_ps, n_boot=200, seed=r, block_frames=1)
        covered["iid"] += iid["ci_low"] <= truth <= iid["ci_high"]
    assert np.median(taus) == pytest.approx(tau_true, rel=0.25)
    assert res["block_frames"] >= 4 * tau_true * 0.75
    assert covered["block"] >= 85, covered
    assert covered["iid"] <= 50, covered


def test_autocorrelation_time_of_iid_data_is_about_one():
    rng = np.random.default_rng(0)
    x = (rng.random(20000) < 0.3).astype(float)
    tau = integrated_autocorrelation_time(x, [5000] * 4)
    assert tau == pytest.approx(1.0, abs=0.15)


def test_short_chains_unvisited_states_and_reproducibility():
    # chains of 3, 5 and 50 frames; blocks of 20 are capped at each chain's length
    lengths = [3, 5, 50]
    replica = np.repeat(np.arange(3), lengths)
    time_ps = np.concatenate([np.arange(n) * 2.0 for n in lengths])
    x = (np.arange(len(replica)) % 7 == 0).astype(float)
    res = bootstrap_population(x, replica, time_ps, block_frames=20, n_boot=200, seed=3)
    assert res["n_blocks"] == 1 + 1 + 2
    assert res["population"] == pytest.approx(x.mean())
    assert res == bootstrap_population(x, replica, time_ps, block_frames=20, n_boot=200, seed=3)
    never = bootstrap_population(np.zeros(len(x)), replica, time_ps, n_boot=200)
    assert (never["population"], never["ci_low"], never["ci_high"], never["n_frames_in_state"]) == (0, 0, 0, 0)
    # a single block of a non-constant series says nothing about the spread
    one = bootstrap_population(x[:3], replica[:3], time_ps[:3], block_frames=3)
    assert one["n_blocks"] == 1 and np.isnan(one["ci_low"]) and np.isnan(one["se"])


def test_rows_are_in_frame_order_independent_of_row_order():
    rng = np.random.default_rng(5)
    codes = markov(rng, [[0.9, 0.1], [0.2, 0.8]], n_chains=3, n_frames=200)
    frames, dihedrals = fake_dataset(codes)
    states = conformational_states(dihedrals)
    a = state_populations(states, frames["replica"], frames["time_ps"], n_boot=200)
    perm = rng.permutation(len(frames))
    b = state_populations(states.iloc[perm], frames["replica"].to_numpy()[perm],
                          frames["time_ps"].to_numpy()[perm], n_boot=200)
    pd.testing.assert_frame_equal(a, b)
    assert a["state"].tolist() == list(ROW_STATES)
    row = a.set_index("state")
    assert row.loc[PHI_POSITIVE, "population"] == pytest.approx(
        row.loc["alpha_L", "population"] + row.loc["C7ax", "population"])


# --------------------------------------------------------------------------- halves and drift

THREE = [[0.97, 0.025, 0.005], [0.02, 0.975, 0.005], [0.05, 0.05, 0.90]]  # alpha_R, beta, alpha_L


def test_halves_flag_chains_in_different_basins_and_accept_stationary_data():
    rng = np.random.default_rng(11)
    # two chains: the first sits mostly in alpha_R, the second mostly in beta
    first = markov(rng, [[0.99, 0.01], [0.09, 0.91]], 1, 4000)
    second = markov(rng, [[0.91, 0.09], [0.01, 0.99]], 1, 4000)
    frames, dihedrals = fake_dataset(np.vstack([first, second]))
    states = conformational_states(dihedrals)
    split = halves_agreement(states, frames["replica"], frames["time_ps"], n_boot=300).set_index("state")
    assert "even vs odd" in split["split"].iloc[0]
    assert not split.loc["alpha_R", "halves_agree"] and split.loc["alpha_R", "z_halves"] > 3
    assert split.loc["C7ax", "halves_agree"]  # never visited in either half

    stationary = markov(rng, THREE, 8, 2000)
    frames, dihedrals = fake_dataset(stationary)
    table, _, summary = convergence_report(frames, dihedrals, n_boot=300)
    assert table["halves_agree"].all() and table["no_drift"].all(), table[["state", "z_halves", "z_drift"]]
    assert summary["all_halves_agree"] and summary["no_drift"]


def test_chains_stuck_in_different_basins_give_a_wide_interval():
    # 8 chains that never move: 4 in alpha_R, 4 in beta. Even and odd chains have the same mix,
    # so the halves agree; the pooled block bootstrap resamples whole chains and says p is unknown.
    codes = np.repeat([[0], [0], [0], [0], [1], [1], [1], [1]], 500, axis=1)
    frames, dihedrals = fake_dataset(codes)
    table, _, _ = convergence_report(frames, dihedrals, n_boot=500)
    row = table.set_index("state").loc["alpha_R"]
    assert row["block_frames"] == 500 and row["n_blocks"] == 8
    assert row["ci_low"] < 0.3 and row["ci_high"] > 0.7


def test_single_chain_halves_are_its_two_halves_in_time():
    rng = np.random.default_rng(2)
    codes = np.hstack([markov(rng, [[0.98, 0.02], [0.1, 0.9]], 1, 3000, start=0),
                       markov(rng, [[0.9, 0.1], [0.02, 0.98]], 1, 3000, start=1)])
    frames, dihedrals = fake_dataset(codes)
    table, markdown, summary = convergence_report(frames, dihedrals, n_boot=300)
    assert summary["halves_split"] == "first vs second half of the single chain"
    assert not summary["all_halves_agree"] and "ALA2 alpha_R" in summary["halves_disagree"]
    assert "agree for all rows: **NO**" in markdown


def test_drift_flags_chains_relaxing_from_a_common_start():
    # 128 chains of 400 frames (parallel-tempering-like), all started in alpha_R and relaxing to
    # p(beta) = 0.8 with tau ~ 160 frames: even and odd chains agree, the first and second half
    # of the chains' time do not.
    rng = np.random.default_rng(4)
    codes = markov(rng, [[0.99, 0.01], [0.0025, 0.9975]], 128, 400, start=0)
    frames, dihedrals = fake_dataset(codes)
    table, _, summary = convergence_report(frames, dihedrals, n_boot=300)
    row = table.set_index("state").loc["beta"]
    assert row["halves_agree"]
    assert not row["no_drift"] and row["z_drift"] > 3 and row["early"] < row["late"]
    assert not summary["no_drift"]


# --------------------------------------------------------------------------- report


def test_report_on_a_small_dataset():
    rng = np.random.default_rng(7)
    frames, dihedrals = fake_dataset(markov(rng, THREE, 4, 600), dt_ps=0.5)
    table, markdown, summary = convergence_report(frames, dihedrals, n_boot=200, seed=1, name="al2")
    expected = ["population", "ci_low", "ci_high", "n_frames_in_state", "half_a", "half_b", "z_halves",
                "halves_agree", "block_frames", "tau_frames"]
    assert set(expected) <= set(table.columns)
    assert list(zip(table["residue"], table["state"])) == [("ALA2", s) for s in ROW_STATES]
    assert (table["ci_low"] <= table["population"] + 1e-12).all()
    assert (table["population"] <= table["ci_high"] + 1e-12).all()
    c7ax = table.set_index("state").loc["C7ax"]
    assert (c7ax["population"], c7ax["ci_low"], c7ax["ci_high"], c7ax["n_frames_in_state"]) == (0, 0, 0, 0)
    assert np.isnan(c7ax["tau_frames"])
    assert summary["n_frames"] == 2400 and summary["n_chains"] == 4
    assert summary["aggregate_time_ns"] == pytest.approx(4 * 600 * 0.5 / 1000)
    json.dumps(summary, allow_nan=False)
    assert markdown.startswith("# Convergence of al2 MD data")
    assert "2,400 frames in 4 chain(s)" in markdown and "1.2 ns" in markdown
    assert markdown.count("| ALA2 |") == len(ROW_STATES)
    again, _, _ = convergence_report(frames, dihedrals, n_boot=200, seed=1, name="al2")
    pd.testing.assert_frame_equal(table, again)
    other, _, _ = convergence_report(frames, dihedrals, n_boot=200, seed=2)
    assert not np.allclose(other["ci_low"], table["ci_low"])


def test_populations_vs_time_checkpoints():
    rng = np.random.default_rng(8)
    frames, dihedrals = fake_dataset(markov(rng, THREE, 3, 100))
    curves = convergence_curves(frames, dihedrals, n_checkpoints=4, n_boot=100)
    beta = curves[curves["state"] == "beta"]
    assert beta["checkpoint"].tolist() == [1, 2, 3, 4]
    assert beta["n_frames"].tolist() == [75, 150, 225, 300]
    np.testing.assert_allclose(beta["time_ns"], [0.075, 0.15, 0.225, 0.3])
    full = state_populations(conformational_states(dihedrals), frames["replica"], frames["time_ps"], n_boot=100)
    assert beta["population"].iloc[-1] == pytest.approx(full.set_index("state").loc["beta", "population"])
    with pytest.raises(ValueError, match="n_checkpoints"):
        populations_vs_time(conformational_states(dihedrals), frames["replica"], frames["time_ps"],
                            n_checkpoints=0)


def test_inconsistent_inputs_are_named():
    frames, dihedrals = fake_dataset(np.zeros((2, 5), dtype=int))
    with pytest.raises(ValueError, match="dihedral table has 9 rows but the frames table has 10 frames"):
        convergence_report(frames, dihedrals.iloc[:-1])
    shifted = dihedrals.assign(frame=dihedrals["frame"] + 1)
    with pytest.raises(ValueError, match=r"'frame' column must hold each of 0\.\.9 once"):
        convergence_report(frames, shifted)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['time_ps'\]"):
        convergence_report(frames.drop(columns="time_ps"), dihedrals)
    with pytest.raises(ValueError, match="no 'frame' column"):
        convergence_report(frames, dihedrals.drop(columns="frame"))
    twice = frames.assign(time_ps=1.0)
    with pytest.raises(ValueError, match="replica 0 has two frames at time_ps=1.0"):
        convergence_report(twice, dihedrals)
    with pytest.raises(ValueError, match="n_boot"):
        convergence_report(frames, dihedrals, n_boot=1)
    # shuffled dihedral rows are fine: they are matched by 'frame'
    table, _, _ = convergence_report(frames, dihedrals.iloc[::-1], n_boot=50)
    assert table.set_index("state").loc["alpha_R", "population"] == 1.0


def test_rule_script_end_to_end(tmp_path):
    """Run workflow/scripts/md_convergence.py as Snakemake would, with a stand-in ``snakemake`` object."""
    from boltzflow.io import read_table, write_sample_set, write_table

    rng = np.random.default_rng(9)
    frames, dihedrals = fake_dataset(markov(rng, THREE, 2, 300))
    frames_path, dihedrals_path = tmp_path / "frames.parquet", tmp_path / "dihedrals.parquet"
    write_sample_set(frames_path, np.zeros((len(frames), 3)), frames["energy"].to_numpy(), target="al2",
                     units="nm", extra={"replica": frames["replica"].to_numpy(),
                                        "time_ps": frames["time_ps"].to_numpy()})
    write_table(dihedrals_path, dihedrals)
    out = tmp_path / "out"
    driver = f"""
import runpy, sys
from types import SimpleNamespace as NS
class Wildcards(dict):
    __getattr__ = dict.__getitem__
sys.path.insert(0, {str(ROOT / 'workflow' / 'scripts')!r})
smk = NS(
    input=NS(frames={str(frames_path)!r}, dihedrals={str(dihedrals_path)!r}),
    output=NS(table={str(out / 'convergence.parquet')!r}, markdown={str(out / 'convergence.md')!r},
              figures=[{str(out / 'md_populations.png')!r}, {str(out / 'md_populations.pdf')!r}]),
    params=NS(settings={{"n_boot": 100, "seed": 0, "block_frames": None}}),
    wildcards=Wildcards(system="al2"), log=[{str(out / 'md_convergence.log')!r}], rule="md_convergence",
)
runpy.run_path({str(ROOT / 'workflow' / 'scripts' / 'md_convergence.py')!r}, init_globals={{"snakemake": smk}})
"""
    done = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table, meta = read_table(out / "convergence.parquet", required=("residue", "state", "population"))
    assert len(table) == len(ROW_STATES)
    assert meta["rule"] == "md_convergence" and meta["convergence"]["n_chains"] == 2
    assert (out / "convergence.md").read_text().startswith("# Convergence of al2 MD data")
    assert (out / "md_populations.png").stat().st_size > 0 and (out / "md_populations.pdf").stat().st_size > 0
    assert "halves agree" in (out / "md_convergence.log").read_text()
