"""flowMC-EBM: initialisation, a short training on the 2-D mixture, resume, settings and data errors."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from boltzflow.config import validate_config
from boltzflow.ebm import (
    EBMSettings,
    build_ebm,
    evaluate_ebm,
    load_dataset,
    load_ebm_model,
    resolve_run,
    save_ebm_model,
    train_ebm,
)
from boltzflow.io import ArtifactError

SCHEMA = "workflow/schemas/config.schema.yaml"


def ebm_config(**ebm):
    cfg = {"experiment": "t", "ebm": {"datasets": ["mixture2d_weights"], **ebm}}
    validate_config(cfg, schema=SCHEMA)
    return cfg["ebm"]


def test_tilted_ebm_starts_as_the_flow_base():
    ebm = build_ebm({"dim": 2, "base_scale": 1.7})
    x = torch.randn(50, 2, dtype=torch.float64)
    expected = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)).log_prob(x).sum(1)
    torch.testing.assert_close(ebm.log_prob64(x), expected, rtol=0, atol=1e-12)
    assert torch.equal(ebm.energy(x.float()), torch.zeros(50))


def test_resolve_run_merges_method_defaults_and_per_dataset_overrides():
    cfg = ebm_config(n_data=1000, flowmc={"n_local": 8},
                     per_dataset={"mixture2d_weights": {"train": {"epochs": 2}, "flowmc": {"n_particles": 16}}})
    run = resolve_run(cfg, "mixture2d_weights", "flowmc", 3)
    s = run.settings
    assert (s.n_local, s.n_particles, s.global_kind, s.seed) == (8, 16, "isir", 3)
    assert s.iterations == int(np.ceil(2 * 1000 / 256))
    ula = resolve_run(cfg, "mixture2d_weights", "ula", 0).settings
    assert (ula.local_kernel, ula.global_kind, ula.n_local, ula.init) == ("ula", "none", 512, "uniform")
    bad = copy.deepcopy(cfg)
    bad["per_dataset"]["mixture2d_weights"]["train"]["epochz"] = 1
    with pytest.raises(ValueError, match=r"ebm.per_dataset.mixture2d_weights.train: unknown key\(s\) epochz"):
        resolve_run(bad, "mixture2d_weights", "flowmc", 0)
    with pytest.raises(ValueError, match="batch_size <= n_persistent"):
        resolve_run(ebm_config(train={"n_persistent": 8}), "mixture2d_weights", "flowmc", 0)


def test_user_data_is_read_and_checked(tmp_path):
    good = tmp_path / "points.npy"
    np.save(good, np.random.default_rng(0).normal(size=(100, 3)))
    cfg = ebm_config(user_data={"mine": str(good)})
    data = load_dataset(cfg, "mine", 10)
    assert data.x.shape == (100, 3) and data.centres is None
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ArtifactError, match="bad.npy: user data holds 1 non-finite"):
        load_dataset(ebm_config(user_data={"bad": str(bad)}), "bad", 10)
    with pytest.raises(ArtifactError, match="missing.npy: user data file not found"):
        load_dataset(ebm_config(user_data={"m": str(tmp_path / "missing.npy")}), "m", 10)
    with pytest.raises(ValueError, match="has no exact sampler"):
        load_dataset(cfg, "lj13", 10)


# Resume tests: a history row every 5 iterations and a checkpoint every 10, so that a few iterations
# cover saving, killing and resuming.
RESUME = {"history_every": 5, "checkpoint_every": 10}


def _short_run(tmp_path, method="flowmc", iterations=150, identity="a", log=None, **over):
    cfg = ebm_config(n_data=8192, train={"batch_size": 128, "n_persistent": 1024, "history_every": 25,
                                         "checkpoint_every": 50, "lr_ebm": 3e-3, "lr_flow": 3e-3},
                     flowmc={"n_cycles": 2, "n_local": 6, "n_particles": 16})
    data = load_dataset(cfg, "mixture2d_weights", cfg["n_data"])
    run = resolve_run(cfg, "mixture2d_weights", method, 0)
    settings = EBMSettings(**{**run.settings.__dict__, "iterations": iterations, **over})
    out = train_ebm(torch.as_tensor(data.x), settings, run.energy, run.flow, tmp_path / "ck", centres=data.centres,
                    box=data.box, grid_points=60, identity=identity, log=log)
    return data, settings, out


def test_short_flowmc_training_moves_mode_weights_toward_the_truth(tmp_path):
    data, settings, (ebm, flow, bank, history, summary) = _short_run(tmp_path)
    truth = data.weights
    first = history.iloc[0][[f"ebm_w{k}" for k in range(4)]].to_numpy(float)
    # At E = 0 the tilted EBM is N(0, s^2): its zone masses are far from (0.1, 0.2, 0.3, 0.4).
    start = build_ebm({**ebm.config()})
    from boltzflow.ebm import grid_log_density
    from boltzflow.evaluation import mode_weights
    grid, lp, _ = grid_log_density(start.log_prob64, *data.box, 60)
    w0 = mode_weights(grid, data.centres, log_w=lp)
    mse0 = float(np.mean((w0 - truth) ** 2))
    metrics, table = evaluate_ebm(ebm, flow, bank, settings, centres=data.centres, true_weights=truth,
                                  true_log_prob=data.log_prob, box=data.box, grid_points=80, n_eval=512,
                                  rhat_chains=32, rhat_cycles=2, local_state=summary["local_state"])
    assert mse0 > 0.01
    assert metrics["mse_ebm"] < mse0 / 5, (mse0, metrics["mse_ebm"], first)
    assert 0.0 < metrics["global_acceptance"] <= 1.0
    assert abs(metrics["local_acceptance"] - 0.574) < 0.15  # evaluated with the adapted step size
    assert np.isfinite(metrics["rhat_max"]) and np.isfinite(metrics["log_density_sq_error_median"])
    assert len(table) == 80 * 80 and set(table.columns) == {"x", "y", "log_p_model", "log_p_true"}


def test_training_resumes_to_the_same_result(tmp_path):
    _, _, (ebm_a, flow_a, bank_a, hist_a, _) = _short_run(tmp_path / "a", iterations=14, **RESUME)
    # an interrupted run: 10 iterations saved a checkpoint; resuming finishes the remaining 4
    _short_run(tmp_path / "b", iterations=10, **RESUME)
    _, _, (ebm_b, flow_b, bank_b, hist_b, _) = _short_run(tmp_path / "b", iterations=14, **RESUME)
    assert torch.equal(bank_a, bank_b)
    for p, q in zip(ebm_a.state_dict().values(), ebm_b.state_dict().values()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(hist_a["loss_ebm"].to_numpy(), hist_b["loss_ebm"].to_numpy())


def test_a_killed_run_with_the_cosine_schedule_resumes_to_the_same_result(tmp_path):
    import logging

    class Kill(Exception):
        pass

    class KillAt15(logging.Logger):  # dies after the checkpoint of iteration 10, at the history row of 15
        def info(self, msg, *args, **kwargs):
            if args and args[0] == 15:
                raise Kill

    _, _, (ebm_a, _, bank_a, hist_a, _) = _short_run(tmp_path / "a", iterations=20, lr_schedule="cosine", **RESUME)
    with pytest.raises(Kill):
        _short_run(tmp_path / "b", iterations=20, lr_schedule="cosine", log=KillAt15("kill"), **RESUME)
    _, _, (ebm_b, _, bank_b, hist_b, _) = _short_run(tmp_path / "b", iterations=20, lr_schedule="cosine", **RESUME)
    assert torch.equal(bank_a, bank_b)
    for p, q in zip(ebm_a.state_dict().values(), ebm_b.state_dict().values()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(hist_a["lr_ebm"].to_numpy(), hist_b["lr_ebm"].to_numpy())
    assert hist_a["lr_ebm"].iloc[-1] < 0.1 * hist_a["lr_ebm"].iloc[0]


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, caplog):
    _short_run(tmp_path, iterations=10, identity="one", **RESUME)
    _, _, (_, _, _, hist, _) = _short_run(tmp_path, iterations=10, identity="two", **RESUME)
    assert "belongs to another run" in caplog.text
    assert hist["iteration"].iloc[0] == 5  # trained from the start


def test_ula_baseline_trains_without_the_flow(tmp_path):
    _, settings, (ebm, flow, bank, history, _) = _short_run(tmp_path, method="ula", iterations=20,
                                                           n_local=20)
    assert not settings.uses_flow and "flow_nll" not in history
    assert history["global_acceptance"].isna().all() and (history["local_acceptance"] == 1.0).all()
    assert float(ebm.energy.out.weight.detach().abs().sum()) > 0  # the energy moved away from E = 0


def test_saved_model_round_trips_and_bad_files_are_named(tmp_path):
    ebm = build_ebm({"dim": 2, "base_scale": 1.3})
    from boltzflow.flows import build_flow
    flow = build_flow({"transform": "affine", "layers": 2, "hidden": 8, "frame": {"kind": "vector", "dim": 2, "scale": 1.3}})
    torch.nn.init.normal_(ebm.energy.out.weight)
    save_ebm_model(tmp_path / "m.pt", ebm, flow, extra={"note": "x"})
    ebm2, flow2, rest = load_ebm_model(tmp_path / "m.pt")
    x = torch.randn(7, 2)
    torch.testing.assert_close(ebm2.log_prob64(x), ebm.log_prob64(x))
    assert rest == {"note": "x"}
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="junk.pt: not a readable EBM checkpoint"):
        load_ebm_model(tmp_path / "junk.pt")


def test_command_line_runs_one_ebm_and_names_bad_input(tmp_path, capsys):
    """python -m boltzflow.ebm.run: a tiny run writes the rules' outputs; a wrong key, an unknown
    dataset and a bad --epochs each stop it before training, naming what is wrong."""
    import json

    from boltzflow.ebm import ebm_section, main
    from boltzflow.io import read_table

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("ebm:\n  n_data: 256\n  train: {epochs: 1, batch_size: 64, n_persistent: 64, history_every: 2}\n"
                    "  flowmc: {n_cycles: 1, n_local: 2, n_particles: 4}\n"
                    "  evaluation: {grid_points: 20, history_grid_points: 10, n_eval: 32, rhat_chains: 8, rhat_cycles: 2}\n")
    # layered on config/config.yaml key by key: the default's gmm4_d16 settings survive, ours win
    cfg = ebm_section([tiny])
    assert cfg["n_data"] == 256 and cfg["per_dataset"]["gmm4_d16"]["n_data"] == 50000
    out = tmp_path / "run"
    assert main(["--configfile", str(tiny), "--dataset", "mixture2d_weights", "--method", "flowmc",
                 "--epochs", "0.5", "--out", str(out)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["dim"] == 2 and 0 <= row["mse_ebm"] < 1
    history, meta = read_table(out / "history.parquet")
    assert history["iteration"].iloc[-1] == 2 and meta["rule"] == "train_ebm"  # 0.5 * 256 / 64
    metrics, _ = read_table(out / "metrics.parquet")
    assert metrics["rhat_max"].iloc[0] == pytest.approx(row["rhat_max"])
    assert {p.name for p in out.iterdir()} == {"model.pt", "history.parquet", "chains.parquet", "metrics.parquet",
                                              "density.parquet"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("ebm: {train: {epochz: 3}}\n")
    for argv, message in (([f"--configfile={bad}", "--dataset", "rings"], "ebm.train.epochz"),
                          (["--dataset", "ringz"], "unknown dataset 'ringz'"),
                          (["--dataset", "rings", "--epochs", "-1"], "--epochs must be > 0")):
        with pytest.raises(SystemExit) as stop:
            main([*argv, "--method", "ula", "--out", str(tmp_path / "never")])
        assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_rhat_run_of_an_exact_sampler_passes_and_of_stuck_chains_fails():
    """evaluate_ebm's R-hat on gmm4_d16 with the true density as the EBM and the exact mixture as
    the flow: i-SIR + MALA chains mix (max R-hat <= 1.05 with the default 32 cycles); ULA chains
    started in one mode each cannot leave it (R-hat far above 1.05)."""
    from boltzflow.targets import load_target

    target = load_target("gmm4_d16")

    class TrueEBM:  # the evaluation needs only log_prob (and dim)
        dim = 16

        def log_prob(self, x):
            return -target.energy(x.to(torch.float64)).to(x.dtype)

    class ExactFlow:
        def sample(self, n, generator=None):
            x = target.sample(n, generator=generator).float()
            return x, -target.energy(x.double()) - target.log_z

        def log_prob(self, x):
            return -target.energy(x.double()) - target.log_z

    gen = torch.Generator().manual_seed(0)
    bank = target.sample(512, generator=gen).float()
    flowmc = EBMSettings(method="flowmc", iterations=1, batch_size=128, n_persistent=512, n_cycles=2,
                         n_local=8, n_particles=128, step_size=0.1)
    torch.set_num_threads(1)
    metrics, _ = evaluate_ebm(TrueEBM(), ExactFlow(), bank, flowmc, rhat_chains=128)
    assert metrics["rhat_max"] <= 1.05 and metrics["global_acceptance"] > 0.9  # measured 1.017; 8 cycles: 1.08
    modes = torch.cat([target.sample(64, generator=gen).float() * 0 + m for m in target.means.float()[[0, 3]]])
    ula = EBMSettings(method="ula", iterations=1, batch_size=64, n_persistent=128, n_cycles=1, n_global=0,
                      n_local=64, global_kind="none", local_kernel="ula", step_size=1e-2)
    stuck, _ = evaluate_ebm(TrueEBM(), ExactFlow(), modes, ula, rhat_chains=128, rhat_cycles=4)
    assert stuck["rhat_max"] > 1.5  # measured 2.07


def test_late_training_mse_reads_the_history():
    from boltzflow.ebm import late_training_mse

    truth = np.array([0.1, 0.2, 0.3, 0.4])
    rows = [{"iteration": i, **{f"ebm_w{k}": w for k, w in enumerate(truth + (0.1 if i == 90 else 0.0) * np.array([1, -1, 0, 0]))}}
            for i in range(10, 101, 10)]
    late = late_training_mse(pd.DataFrame(rows), truth)  # the last 20 %: iterations 80, 90, 100
    assert late["late_rows"] == 3 and late["mse_ebm_late_median"] == 0.0
    assert late["mse_ebm_late_max"] == pytest.approx(0.02 / 4)
    assert late_training_mse(pd.DataFrame({"iteration": [1]}), truth) == {}


def test_cosine_schedule_runs_from_the_rate_to_its_final_fraction():
    settings = EBMSettings(method="flowmc", iterations=101, lr_schedule="cosine", lr_final_fraction=0.05)
    factors = [settings.lr_factor(i) for i in range(101)]
    assert factors[0] == 1.0 and factors[-1] == pytest.approx(0.05) and factors[50] == pytest.approx(0.525)
    assert all(a > b for a, b in zip(factors, factors[1:]))
    assert EBMSettings(method="flowmc", iterations=101).lr_factor(100) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        EBMSettings(method="flowmc", iterations=5, lr_schedule="step")
