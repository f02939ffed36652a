"""The cross-method comparison (boltzflow.shootout): every method's account of its energy calls
against a target that counts what it is really asked, the budget arithmetic, the one scoring
function, the table and the config checks."""

from __future__ import annotations

import logging
import math
from dataclasses import replace

import mdtraj
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from boltzflow.config import ConfigError, validate_config
from boltzflow.evaluation import (
    markdown_shootout_table,
    score_peptide_set,
    score_sample_set,
    shootout_table,
)
from boltzflow.sgds.settings import SGDSSettings
from boltzflow.shootout import (
    METHODS,
    STRUCTURED_METHODS,
    check_shootout,
    diffusion_settings,
    run_method,
    shootout_runs,
    shootout_settings,
)
from boltzflow.shootout.experiment import reference_set
from boltzflow.systems import backbone_dihedrals
from boltzflow.targets import load_target
from boltzflow.targets.base import Target


class Tally(Target):
    """A target that counts every configuration whose energy it is asked for (with or without
    the gradient: the kernels take gradients through ``energy``)."""

    def __init__(self, inner: Target):
        self.inner, self.dim, self.log_z, self.rows = inner, inner.dim, inner.log_z, 0
        self.means = getattr(inner, "means", None)
        for name in ("name", "com_free", "n_particles", "spatial_dim"):  # a particle system's structure
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += int(x.shape[0])
        return self.inner.energy(x)

    def sample(self, n, *, generator=None, dtype=torch.float32):
        return self.inner.sample(n, generator=generator, dtype=dtype)


SETTINGS = {
    "init_std": 3.0, "keep_points": 500, "n_eval": 64,
    "pt": {"chains": 4, "temperatures": 3, "t_max": 5.0, "step_size": 0.1},
    "flow_mle": {"pt_fraction": 0.5, "training_points": 200, "transform": "spline", "layers": 2, "hidden": 8,
                 "depth": 1, "bins": 4, "bound": 5.0, "steps": 10, "batch_size": 32, "lr": 1e-3},
    "flowmc": {"chains": 8, "n_particles": 4, "n_local": 3, "step_size": 0.1, "transform": "affine", "layers": 2,
               "hidden": 8, "depth": 1, "bins": 4, "bound": 5.0, "lr": 1e-3, "flow_steps": 2, "batch_size": 32,
               "bank_cycles": 3},
    "flow_regflow": {"coupling": "ot", "n_pairs": 300, "ot_batch_size": 64, "regulariser": "logdet",
                     "lambda_reg": 1e-5, "target_noise": 0.01,
                     "teacher": {"hidden": 8, "layers": 1, "steps": 10, "batch_size": 32, "lr": 1e-3,
                                 "prior_pairing": "minibatch_ot", "solver_steps": 2}},
    "md": {"ladders": 4, "temperatures": 2, "max_temperature_K": 420.0, "timestep_fs": 3.125, "friction_per_ps": 1.0,
           "hydrogen_mass_amu": 4.0, "exchange_every": 10, "burn_in": 0.5},
    "sgds": {"searcher_fraction": 0.5},
}
TINY_SGDS = SGDSSettings(n_steps=4, sigma=2.0, hidden=8, depth=1, harmonics=2, batch_size=8, iterations=(4, 4),
                         searcher_chains=6, searcher_steps=10, searcher_burn_in=4, searcher_prior_std=3.0,
                         rnd_hidden=8, buffer_capacity=500, ls_every=3, ls_steps=2, history_every=2,
                         checkpoint_every=1000)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_accounts_for_each_energy_call_it_makes(method):
    inner = load_target("mixture2d_weights")
    tally = Tally(inner)
    budget = 1500
    run = run_method(method, tally, budget, 3, SETTINGS, sgds_settings=TINY_SGDS)
    assert run.energy_calls == tally.rows, f"{method} reports {run.energy_calls} calls, the target saw {tally.rows}"
    assert 0.5 * budget <= run.energy_calls <= budget  # it spends most of the budget and never more
    # the sample set's energies are the target's (not an estimate), float64
    assert run.x.shape[1] == inner.dim and len(run.x) == len(run.energy) > 0
    np.testing.assert_allclose(run.energy, inner.energy(torch.as_tensor(run.x, dtype=torch.float64)).numpy(),
                               rtol=1e-5, atol=1e-5)
    if run.log_w is not None:
        assert run.log_w.dtype == np.float64 and len(run.log_w) == len(run.x) and math.isfinite(run.log_z)


def test_regflow_with_a_cnf_teacher_accounts_for_its_calls():
    """The teacher and its reflow pairs cost no energy call: the account is the tempering's and the proposals'."""
    tally = Tally(load_target("mixture2d_weights"))
    settings = {**SETTINGS, "flow_regflow": {**SETTINGS["flow_regflow"], "coupling": "cnf"}}
    run = run_method("flow_regflow", tally, 1500, 0, settings)
    assert run.energy_calls == tally.rows and 750 <= run.energy_calls <= 1500
    assert run.details["proposals"] + run.details["pt_calls"] == run.energy_calls and math.isfinite(run.log_z)


@pytest.fixture(scope="module")
def al2_target():
    return load_target("al2")


def _count_peptide_calls(target, monkeypatch) -> list[int]:
    """Count every configuration the peptide is asked for an energy, or an energy with forces."""
    rows = [0]
    energy, energy_and_forces = target._energy, target.energy_and_forces

    def counted_energy(x):
        rows[0] += int(x.shape[0])
        return energy(x)

    def counted_energy_and_forces(x):
        rows[0] += int(x.shape[0])
        return energy_and_forces(x)

    monkeypatch.setattr(target, "_energy", counted_energy)
    monkeypatch.setattr(target, "energy_and_forces", counted_energy_and_forces)
    return rows


PEPTIDE_SETTINGS = {**SETTINGS, "keep_points": 400,
                    "flow_mle": {**SETTINGS["flow_mle"], "proposals": 300, "pt_fraction": 0.5, "frame": "internal",
                                 "training_points": 300}}


@pytest.mark.parametrize("method", STRUCTURED_METHODS)
def test_peptide_methods_account_for_each_force_and_energy_call(method, al2_target, monkeypatch):
    """Tempering MD counts one call per replica and step (the start included); the flows add
    their evaluated proposals (a proposal beyond a torsion cut is not evaluated, so not counted)."""
    rows = _count_peptide_calls(al2_target, monkeypatch)
    budget = 4000
    run = run_method(method, al2_target, budget, 1, PEPTIDE_SETTINGS)
    assert run.energy_calls == rows[0] and 0.9 * budget <= run.energy_calls <= budget
    replicas = 4 * 2
    if method == "pt":
        assert run.details["pt_steps"] == budget // replicas - 1 and run.log_w is None
        assert len(run.x) <= PEPTIDE_SETTINGS["keep_points"]
    else:
        assert run.details["pt_calls"] == replicas * (run.details["pt_steps"] + 1)
        assert run.details["pt_calls"] + run.details["proposals"] - run.details["invalid_proposals"] == run.energy_calls
        assert 300 <= run.details["proposals"] < 300 + replicas
        assert len(run.log_w) == len(run.x) == run.details["proposals"]  # all kept (keep_points 400)
    # the reported energies are the target's (tempering: evaluated in float32 by the engine)
    finite = np.isfinite(run.energy)
    assert finite.sum() > 0.9 * len(run.energy)
    np.testing.assert_allclose(run.energy[finite], al2_target.energy(torch.as_tensor(run.x[finite])).numpy(),
                               rtol=1e-4, atol=1e-2)


def test_flows_of_the_density_samplers_refuse_a_peptide(al2_target):
    with pytest.raises(ValueError, match="flowmc does not run on a peptide or particle system"):
        run_method("flowmc", al2_target, 10_000, 0, PEPTIDE_SETTINGS)
    with pytest.raises(ValueError, match="pis does not run on a peptide or particle system"):
        run_method("pis", load_target("lj13"), 10_000, 0, SETTINGS, sgds_settings=TINY_SGDS)


@pytest.mark.parametrize("method", STRUCTURED_METHODS)
def test_particle_methods_account_for_their_calls_and_keep_the_centroid_out_of_the_flow(method):
    """On LJ-13 the flows work in centroid-free coordinates: their proposals have centroid 0 and
    the reported energies are the target's."""
    inner = load_target("lj13")
    tally = Tally(inner)
    settings = {**SETTINGS, "init_std": 1.5, "pt": {**SETTINGS["pt"], "step_size": 1e-3}}
    run = run_method(method, tally, 3000, 0, settings)
    assert run.energy_calls == tally.rows and 1500 <= run.energy_calls <= 3000
    np.testing.assert_allclose(run.energy, inner.energy(torch.as_tensor(run.x)).numpy(), rtol=1e-6, atol=1e-6)
    if method != "pt":
        centroids = run.x.reshape(len(run.x), 13, 3).mean(axis=1)
        assert np.abs(centroids).max() < 1e-6 and math.isfinite(run.log_z)


def test_particle_scoring_against_held_out_reference_samples(tmp_path):
    """A particle system is scored on energy W1 and distance W1 (no W2); its floor (held-out
    reference samples) scores near 0, a set of stretched clusters far from it; a reference file
    for another target is refused, naming it."""
    from boltzflow.io import ArtifactError, write_sample_set
    from boltzflow.shootout.experiment import _Reference
    from boltzflow.shootout.runs import _pt_chains
    target = load_target("lj13")
    x, energy, _, _ = _pt_chains(target, 40_000, {"chains": 16, "temperatures": 4, "t_max": 2.0, "step_size": 1e-3},
                                 torch.Generator().manual_seed(0), 1.5, 2000)
    x, energy = x[energy < 0], energy[energy < 0]  # this short run's bound clusters (~600 of 1,664)
    write_sample_set(tmp_path / "lj13.parquet", x.astype(np.float32), energy, target="lj13", units="kT")
    settings = {"n_eval": 300, "w2_points": 300, "reference_samples": 10_000}
    reference = _Reference(target, settings, 0, {"reference": tmp_path / "lj13.parquet"})
    floor_x, floor_e = reference.floor_points()
    floor = reference.score(floor_x, floor_e, None, float("nan"))
    assert "w2" not in floor and floor["distance_w1"] < 0.03 and floor["energy_w1"] < 2.0  # 0.010 and 0.63
    stretched = 1.2 * floor_x
    far = reference.score(stretched, target.energy(torch.as_tensor(stretched)).numpy(), None, float("nan"))
    assert far["distance_w1"] > 10 * floor["distance_w1"] and far["energy_w1"] > 10 * floor["energy_w1"]
    ref_x, _ = reference.points()
    # the floor and the reference split the file's rows (centroid removed) between them
    centred = x.astype(np.float32).astype(np.float64).reshape(len(x), 13, 3)
    centred = (centred - centred.mean(axis=1, keepdims=True)).reshape(len(x), -1)
    assert len(ref_x) + 300 == len(x)
    np.testing.assert_allclose(np.sort(np.concatenate([floor_x, ref_x]), axis=0), np.sort(centred, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="missing reference"):
        _Reference(target, settings, 0, {})
    write_sample_set(tmp_path / "other.parquet", x.astype(np.float32), energy, target="lj55", units="kT")
    with pytest.raises(ArtifactError, match="other.parquet: sample set is for target 'lj55'"):
        _Reference(target, settings, 0, {"reference": tmp_path / "other.parquet"}).points()


def test_score_peptide_set_against_md_halves_and_a_collapsed_set(al2_target):
    """Two random halves of one tempering run's states score close to each other; a set in the beta basin alone
    has mode TV 1 - p_ref(beta) (all its weight in one of the four states), and weights that
    zero every other state give the same."""
    from boltzflow.shootout.runs import _md_chains
    x, energy, _, _ = _md_chains(al2_target, 200_000, {**SETTINGS["md"], "ladders": 32}, 0, 4000)
    topology = mdtraj.Topology.from_openmm(al2_target.topology)
    # two random halves of the same states (the short run's ladders sit in different basins)
    order = np.random.default_rng(0).permutation(len(x))
    ref, mine = order[: len(x) // 2], order[len(x) // 2:]
    ref_x, ref_u, x, energy = x[ref], energy[ref], x[mine], energy[mine]
    kwargs = {"reference_x": ref_x, "reference_energy": ref_u, "topology": topology, "n_eval": len(ref_x),
              "tw2_points": 2000}  # every point: T-W2 of 1,920 against 1,920 same-law points is 0.23
    same = score_peptide_set(x, energy, **kwargs)
    assert same["t_w2"] < 0.3 and same["mode_tv"] < 0.1 and same["energy_w1"] < 1.0 and math.isnan(same["ess"])
    angles = backbone_dihedrals(x, topology)
    phi, psi = np.degrees(angles["phi_ALA2"].to_numpy()), np.degrees(angles["psi_ALA2"].to_numpy())
    beta = (phi <= 0) & ((psi <= -120) | (psi > 50))
    ref_angles = backbone_dihedrals(ref_x, topology)
    ref_phi, ref_psi = np.degrees(ref_angles["phi_ALA2"].to_numpy()), np.degrees(ref_angles["psi_ALA2"].to_numpy())
    p_beta = float(((ref_phi <= 0) & ((ref_psi <= -120) | (ref_psi > 50))).mean())
    assert 0.2 < p_beta < 0.95
    collapsed = score_peptide_set(x[beta], energy[beta], **kwargs)
    assert collapsed["mode_tv"] == pytest.approx(1 - p_beta, abs=1e-9) and collapsed["t_w2"] > 2 * same["t_w2"]
    weighted = score_peptide_set(x, energy, log_w=np.where(beta, 0.0, -np.inf), **kwargs)
    assert weighted["mode_tv"] == pytest.approx(1 - p_beta, abs=1e-9)
    assert weighted["ess"] == pytest.approx(beta.mean()) and weighted["n_nonfinite"] == (~beta).sum()


@pytest.mark.parametrize("method", ["sgds", "tb", "tb_ls", "pis"])
def test_diffusion_budgets_stay_within_the_budget(method):
    base = SGDSSettings(batch_size=256, searcher_chains=300, iterations=(10, 10), ls_every=100, ls_steps=200)
    for budget in (10_000, 31_000, 100_000, 1_000_000):
        s = diffusion_settings(base, method, budget, n_eval=1000, searcher_fraction=0.5)
        b = s.batch_size
        if method == "sgds":
            calls = sum(b * ((it + 1) // 2) for it in s.iterations) + s.rounds * s.searcher_chains * (s.searcher_steps + 1)
        elif method == "tb_ls":
            it = s.iterations[0]
            calls = b * ((it + 1) // 2) + ((it - 1) // s.ls_every) * (s.ls_steps + 1) * b
        else:
            calls = b * s.iterations[0]
        assert calls + 1000 <= budget, (method, budget, calls)
        assert calls + 1000 >= 0.8 * budget or method == "tb_ls", (method, budget, calls)
    with pytest.raises(ValueError, match=f"{method}: a budget of 1200"):
        diffusion_settings(base, method, 1200, n_eval=1000, searcher_fraction=0.5)


def test_too_small_budgets_and_unknown_methods_are_refused():
    target = load_target("mixture2d_weights")
    with pytest.raises(ValueError, match="pt: a budget of 20 energy calls is below"):
        run_method("pt", target, 20, 0, SETTINGS)
    with pytest.raises(ValueError, match="flowmc: a budget of 100"):
        run_method("flowmc", target, 100, 0, SETTINGS)
    with pytest.raises(ValueError, match="unknown shootout method 'nuts'"):
        run_method("nuts", target, 1000, 0, SETTINGS)
    with pytest.raises(ValueError, match="needs sgds_settings"):
        run_method("tb", target, 1000, 0, SETTINGS)


def test_score_sample_set_against_exact_and_collapsed_samples():
    target = load_target("mixture2d_weights")
    x_ref, e_ref = reference_set(target, 4000, 0)
    x, e = reference_set(target, 4000, 1)  # another exact draw
    centres = target.means.numpy()
    exact = score_sample_set(x, e, reference_x=x_ref, reference_energy=e_ref, centres=centres, n_eval=2000,
                             w2_points=2000, log_z=-0.01, log_z_true=0.0)
    assert exact["mode_tv"] < 0.03 and exact["modes_found"] == 1.0 and math.isnan(exact["ess"])
    assert exact["log_z_error"] == pytest.approx(0.01)
    # all samples in the heaviest mode: the TV distance is 1 - its weight, one mode found
    zone = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    heaviest = int(np.argmax(target.weights.numpy()))
    collapsed = score_sample_set(x[zone == heaviest], e[zone == heaviest], reference_x=x_ref, reference_energy=e_ref,
                                 centres=centres)
    ref_share = float(np.mean(np.argmin(((x_ref[:, None, :] - centres[None]) ** 2).sum(-1), axis=1) == heaviest))
    assert collapsed["mode_tv"] == pytest.approx(1 - ref_share, abs=1e-9)
    assert collapsed["modes_found"] == 1 / len(centres) and collapsed["w2"] > 2 * exact["w2"]


def test_well_weight_error_of_manywell():
    """Exact samples score ~0; samples all in the right wells score the left wells' weight
    (~0.15 per pair, the exact weight from the quadrature of the 1-D double well); weights count."""
    target = load_target("manywell32")
    assert target.well_coordinates == tuple(range(0, 32, 2))
    x_ref, e_ref = reference_set(target, 4000, 0)
    x, e = reference_set(target, 4000, 1)
    grid = np.linspace(-6.0, 6.0, 24_001)
    density = np.exp(-(grid**4 - 6 * grid**2 - 0.5 * grid))
    left_weight = np.trapezoid(np.where(grid < 0, density, 0.0), grid) / np.trapezoid(density, grid)
    exact = score_sample_set(x, e, reference_x=x_ref, reference_energy=e_ref, well_coordinates=target.well_coordinates)
    assert exact["well_tv"] < 0.02 and "mode_tv" not in exact
    right = np.abs(x)
    stuck = score_sample_set(right, target.energy(torch.from_numpy(right)).numpy(), reference_x=x_ref,
                             reference_energy=e_ref, well_coordinates=target.well_coordinates)
    assert stuck["well_tv"] == pytest.approx(left_weight, abs=0.02)
    # weight 0 on every point with a left well in pair 0: that pair's error is its left weight
    log_w = np.where(x[:, 0] < 0, -np.inf, 0.0)
    weighted = score_sample_set(x, e, reference_x=x_ref, reference_energy=e_ref, log_w=log_w,
                                well_coordinates=[0])
    assert weighted["well_tv"] == pytest.approx(float((x_ref[:, 0] < 0).mean()), abs=1e-12)


def test_score_sample_set_reweights_a_wide_proposal():
    target = load_target("mixture2d_weights")
    x_ref, e_ref = reference_set(target, 4000, 0)
    gen = torch.Generator().manual_seed(5)
    scale = 3.0 * float(x_ref.std())
    x = scale * torch.randn(40_000, 2, generator=gen, dtype=torch.float64)
    log_q = -0.5 * (x / scale).pow(2).sum(1) - 2 * math.log(scale) - math.log(2 * math.pi)
    e = target.energy(x)
    log_w = (-e - log_q).numpy()
    raw = score_sample_set(x.numpy(), e.numpy(), reference_x=x_ref, reference_energy=e_ref)
    weighted = score_sample_set(x.numpy(), e.numpy(), reference_x=x_ref, reference_energy=e_ref, log_w=log_w,
                                log_z=float(np.logaddexp.reduce(log_w) - math.log(len(log_w))), log_z_true=0.0)
    assert 0 < weighted["ess"] < 1 and weighted["log_z_error"] < 0.05
    assert weighted["w2"] < 0.5 * raw["w2"] and weighted["energy_w1"] < 0.5 * raw["energy_w1"]
    with pytest.raises(ValueError, match="log_w has 3 rows"):
        score_sample_set(x.numpy(), e.numpy(), reference_x=x_ref, reference_energy=e_ref, log_w=log_w[:3])


def test_shootout_table_summarises_seeds_and_names_the_methods():
    rows = [pd.DataFrame([{"target": "gmm40", "method": m, "budget": b, "seed": s, "dim": 2,
                           "energy_calls": b - s, "w2": 1.0 + s + (m == "pt"), "energy_w1": 0.1, "log_z_error": np.nan,
                           "mode_tv": 0.2, "modes_found": 1.0, "ess": np.nan, "wall_s": 1.0}])
            for m in ("pt", "exact", "sgds") for b in ((0,) if m == "exact" else (1000, 100)) for s in (0, 1, 2)]
    table = shootout_table(rows)
    assert list(table.method) == ["exact", "pt", "pt", "sgds", "sgds"] and list(table.budget[1:3]) == [100, 1000]
    pt = table[(table.method == "pt") & (table.budget == 1000)].iloc[0]
    assert pt.seeds == 3 and pt.w2_mean == pytest.approx(3.0) and pt.w2_low < 3.0 < pt.w2_high
    text = markdown_shootout_table(table)
    assert "## gmm40 (d = 2)" in text and "| parallel tempering (MALA) | 1,000 | 3 | 999 [998, 1,000] | 3 [" in text
    assert (table.kind == "density").all()  # rows that do not say
    peptide = shootout_table([r.assign(target="al2", kind="peptide") for r in rows])
    assert "| parallel-tempering MD (torch engine) | 1,000 | 3 |" in markdown_shootout_table(peptide)
    assert "log Z error" not in text.split("## gmm40")[1]  # a metric no method has is left out


def test_config_names_a_bad_shootout_setting():
    base = yaml.safe_load(open("config/config.yaml"))
    cases = [({"targets": ["nosuch"]}, "'shootout.targets': 'nosuch' has no exact sampler, MD frames or reference"),
             ({"targets": ["al2"]}, "'shootout.methods': flowmc does not run on the peptide target al2"),
             ({"targets": ["lj13"]}, "'shootout.methods': flowmc does not run on the particle target lj13"),
             ({"targets": ["al2"], "per_target": {"al2": {"methods": ["pt", "nuts"]}}},
              "'shootout.per_target.al2.methods': unknown method 'nuts'"),
             ({"per_target": {"gmm40": {"pt": {"tmax": 3}}}}, "'shootout.per_target.gmm40.pt': unknown key"),
             ({"per_target": {"gmm40": {"seeds": [1], "bogus": 1}}}, "'shootout.per_target.gmm40.bogus': not a shootout setting")]
    for section, message in cases:
        config = {**base, "shootout": {**base["shootout"], **section}}
        with pytest.raises(ConfigError, match=message):
            validate_config(config)
    merged = shootout_settings({"init_std": 1.0, "pt": {"t_max": 10.0, "chains": 4},
                                "per_target": {"gmm40": {"init_std": 21.0, "pt": {"t_max": 100.0}}}}, "gmm40")
    assert merged["init_std"] == 21.0 and merged["pt"] == {"t_max": 100.0, "chains": 4} and "per_target" not in merged
    nested = shootout_settings({"flow_regflow": {"coupling": "ot", "teacher": {"steps": 10, "hidden": 8}},
                                "per_target": {"al2": {"flow_regflow": {"teacher": {"steps": 99}}}}}, "al2")
    assert nested["flow_regflow"] == {"coupling": "ot", "teacher": {"steps": 99, "hidden": 8}}
    with pytest.raises(ValueError, match="shootout.per_target.al2.flow_regflow.teacher: unknown key"):
        shootout_settings({"flow_regflow": {"teacher": {"steps": 10}},
                           "per_target": {"al2": {"flow_regflow": {"teacher": {"step": 1}}}}}, "al2")
    # a peptide with its own methods and budgets: every run listed, nothing else
    section = {"targets": ["gmm40", "al2"], "methods": ["pt", "flowmc"], "budgets": [100, 1000], "seeds": [0],
               "per_target": {"al2": {"methods": ["pt", "flow_regflow"], "budgets": [5000]}}}
    assert check_shootout(section) == []
    assert shootout_runs(section) == [("gmm40", "pt", 100, 0), ("gmm40", "pt", 1000, 0), ("gmm40", "flowmc", 100, 0),
                                      ("gmm40", "flowmc", 1000, 0), ("al2", "pt", 5000, 0), ("al2", "flow_regflow", 5000, 0)]


@pytest.mark.parametrize("method", ["flow_mle", "tb"])
def test_a_run_started_again_resumes_from_its_checkpoints_to_the_same_result(method, tmp_path):
    """The training methods checkpoint to the rule's folder; started again (as after a kill, here
    after the end) they resume from it and give the row of an uninterrupted run."""
    target = load_target("mixture2d_weights")
    settings = {**SETTINGS, "flow_mle": {**SETTINGS["flow_mle"], "steps": 40}}
    sgds = replace(TINY_SGDS, checkpoint_every=2)
    fresh = run_method(method, target, 1500, 2, settings, sgds_settings=sgds)
    first = run_method(method, target, 1500, 2, settings, sgds_settings=sgds, checkpoint_dir=tmp_path / "ckpt")
    assert any((tmp_path / "ckpt").iterdir())  # it wrote checkpoints there
    log = logging.getLogger(f"test-shootout-resume-{method}")
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    again = run_method(method, target, 1500, 2, settings, sgds_settings=sgds, checkpoint_dir=tmp_path / "ckpt",
                       log=log)
    assert any(m.startswith("resuming from") for m in messages), messages  # not trained afresh
    assert not any("another run" in m for m in messages)
    for run in (first, again):
        np.testing.assert_array_equal(run.x, fresh.x)
        np.testing.assert_array_equal(run.log_w, fresh.log_w)
        assert run.energy_calls == fresh.energy_calls
