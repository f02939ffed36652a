"""RegFlow / MLE training: the objectives, the loop's resume and non-finite handling, OT pairs,
the invertibility report, and a RegFlow flow on the checkerboard."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from boltzflow.couplings import ot_pairs, ot_permutation
from boltzflow.evaluation import kish_ess
from boltzflow.flows import build_flow
from boltzflow.targets.synthetic import Checkerboard
from boltzflow.training import TrainSettings, invertibility_report, mle_loss, regflow_loss, train
from boltzflow.training.objectives import heldout_nll


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # network initialisation
    yield
    torch.set_num_threads(threads)


def _vector_flow(transform: str, dim: int, layers: int = 4, hidden: int = 32, dtype: str = "float32", **kw):
    return build_flow({"transform": transform, "layers": layers, "hidden": hidden, "depth": 2, "dtype": dtype,
                       "frame": {"kind": "vector", "dim": dim, "scale": 1.0}, **kw})


@pytest.mark.parametrize("transform", ["affine", "spline"])
def test_regflow_regression_falls_to_near_zero_onto_a_flow_of_the_same_family(transform, tmp_path):
    """When the pairs come from a flow of the same architecture, regression can fit them exactly."""
    dim = 6
    teacher = _vector_flow(transform, dim)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.15)
        x0 = torch.randn(4096, dim, generator=gen)
        x1, _ = teacher(x0)
    student = _vector_flow(transform, dim)
    with torch.no_grad():
        initial = float((student(x0)[0] - x1).square().sum(1).mean())
    settings = TrainSettings(steps=400, batch_size=128, lr=3e-3, weight_decay=0.0, ema_decay=0.9,
                             checkpoint_every=400, history_every=100)
    trained, history, _ = train(student, regflow_loss("none"), {"x0": x0, "x1": x1}, settings, tmp_path)
    with torch.no_grad():
        final = float((trained(x0)[0] - x1).square().sum(1).mean())
    assert initial > 0.5
    assert final < 0.01 * initial, (initial, final)
    assert history["regression"].iloc[-1] < history["regression"].iloc[0]


def test_resume_after_a_kill_gives_the_identical_model(tmp_path):
    dim = 4
    gen = torch.Generator().manual_seed(1)
    data = {"x0": torch.randn(512, dim, generator=gen), "x1": torch.randn(512, dim, generator=gen) * 0.5 + 1.0}
    settings = TrainSettings(steps=60, batch_size=64, lr=1e-3, checkpoint_every=20, history_every=10, seed=3)
    objective = regflow_loss("fwdbwd", lambda_reg=1e-3, target_noise=0.05)

    torch.manual_seed(0)
    reference_model = _vector_flow("spline", dim)
    start = copy.deepcopy(reference_model.state_dict())
    ref, ref_history, _ = train(reference_model, objective, data, settings, tmp_path / "a", identity="x")

    calls = itertools.count()

    def dying(flow, batch, generator):  # the process "dies" during step 45
        if next(calls) == 45:
            raise KeyboardInterrupt
        return objective(flow, batch, generator)

    model = _vector_flow("spline", dim)
    model.load_state_dict(start)
    with pytest.raises(KeyboardInterrupt):
        train(model, dying, data, settings, tmp_path / "b", identity="x")
    fresh = _vector_flow("spline", dim)  # a new process: new model object, same initial weights
    fresh.load_state_dict(start)
    resumed, history, _ = train(fresh, objective, data, settings, tmp_path / "b", identity="x")
    for key, value in ref.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert np.array_equal(history["loss"].to_numpy(), ref_history["loss"].to_numpy())
    # a checkpoint of another run is not resumed from
    other, _, _ = train(_vector_flow("spline", dim), objective, data, settings, tmp_path / "b", identity="y")
    assert other is not None


def test_non_finite_steps_are_skipped_counted_and_abort_when_persistent(tmp_path):
    dim = 3
    data = {"x0": torch.randn(128, dim), "x1": torch.randn(128, dim)}
    base = regflow_loss("logdet", lambda_reg=1e-4)
    calls = itertools.count()

    def sometimes_nan(flow, batch, generator):
        loss, terms = base(flow, batch, generator)
        return (loss * float("nan") if next(calls) in (3, 7) else loss), terms

    settings = TrainSettings(steps=20, batch_size=32, checkpoint_every=10, history_every=10)
    model, history, summary = train(_vector_flow("affine", dim), sometimes_nan, data, settings, tmp_path / "a")
    assert summary["skipped_steps"] == 2 and history["skipped_steps"].sum() == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())

    def always_nan(flow, batch, generator):
        loss, terms = base(flow, batch, generator)
        return loss * float("nan"), terms

    with pytest.raises(RuntimeError, match="5 non-finite steps in a row"):
        train(_vector_flow("affine", dim), always_nan, data,
              TrainSettings(steps=20, batch_size=32, checkpoint_every=10, history_every=10,
                            max_nonfinite_in_a_row=5), tmp_path / "b")


def test_keep_best_returns_the_weights_of_the_lowest_validation_loss_and_resumes(tmp_path):
    """MLE on 24 points over-fits; the validation loss of fresh points is logged at every history row,
    and keep_best returns the EMA weights of its minimum (their held-out NLL is that minimum, below
    the last row's). A run killed mid-way and resumed keeps the same best weights."""
    dim = 2
    gen = torch.Generator().manual_seed(4)
    data = {"x1": torch.randn(24, dim, generator=gen)}
    held_out = torch.randn(2000, dim, generator=gen)

    def validate(model):
        return heldout_nll(model, held_out)

    settings = TrainSettings(steps=600, batch_size=24, lr=1e-2, weight_decay=0.0, ema_decay=0.9,
                             checkpoint_every=100, history_every=20, seed=1)
    torch.manual_seed(0)
    start = copy.deepcopy(_vector_flow("affine", dim, layers=6, hidden=64).state_dict())

    def run(folder, keep_best, objective=mle_loss()):
        model = _vector_flow("affine", dim, layers=6, hidden=64)
        model.load_state_dict(start)
        return train(model, objective, data, settings, tmp_path / folder, identity="k", validate=validate,
                     keep_best=keep_best)

    last, history, summary = run("last", False)
    best, best_history, best_summary = run("best", True)
    assert np.array_equal(history["val_loss"], best_history["val_loss"]) and len(history) == 30
    assert "best_step" not in summary and validate(last) == pytest.approx(history["val_loss"].iloc[-1], abs=1e-9)
    lowest = history["val_loss"].idxmin()
    assert best_summary["best_step"] == history["step"].iloc[lowest] < 600  # it over-fitted
    assert validate(best) == pytest.approx(history["val_loss"].min(), abs=1e-9)
    assert history["val_loss"].min() < history["val_loss"].iloc[-1] - 0.05
    calls = itertools.count()

    def dying(flow, batch, generator):  # killed during step 450, after the best step
        if next(calls) == 450:
            raise KeyboardInterrupt
        return mle_loss()(flow, batch, generator)

    with pytest.raises(KeyboardInterrupt):
        run("killed", True, dying)
    resumed, _, resumed_summary = run("killed", True)
    assert resumed_summary["best_step"] == best_summary["best_step"]
    for key, value in best.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    with pytest.raises(ValueError, match="keep_best needs a validate function"):
        train(_vector_flow("affine", dim), mle_loss(), data, settings, tmp_path / "none", keep_best=True)


def test_mle_on_a_gaussian_reaches_its_entropy(tmp_path):
    """Data from N(m, diag(s^2)): the best NLL is the Gaussian's entropy, known exactly."""
    dim = 3
    gen = torch.Generator().manual_seed(2)
    s = torch.tensor([0.5, 1.0, 2.0])
    m = torch.tensor([1.0, -1.0, 0.5])
    x1 = torch.randn(8192, dim, generator=gen) * s + m
    entropy = float(0.5 * dim * (1 + math.log(2 * math.pi)) + torch.log(s).sum())
    settings = TrainSettings(steps=800, batch_size=256, lr=3e-3, weight_decay=0.0, ema_decay=0.9,
                             checkpoint_every=800, history_every=100)
    model, _, _ = train(_vector_flow("affine", dim), mle_loss(), {"x1": x1}, settings, tmp_path)
    fresh = torch.randn(8192, dim, generator=gen) * s + m
    with torch.no_grad():
        nll = -float(model.log_prob(fresh).mean())
    assert abs(nll - entropy) < 0.05, (nll, entropy)  # Monte Carlo error of the mean ~0.015


def test_ot_permutation_equals_brute_force_assignment():
    rng = np.random.default_rng(4)
    x0, x1 = rng.standard_normal((7, 3)), rng.standard_normal((7, 3))
    perm, _ = ot_permutation(x0, x1)
    costs = {p: sum(np.sum((x0[i] - x1[p[i]]) ** 2) for i in range(7)) for p in itertools.permutations(range(7))}
    best = min(costs, key=costs.get)
    assert tuple(perm.tolist()) == best


def test_ot_pairs_are_a_matching_of_the_data_and_lower_the_cost():
    rng = np.random.default_rng(5)
    data = rng.standard_normal((1000, 4)) * 2.0  # OT can remove most of the independent cost 4 (1 + 4)
    x0, x1, stats = ot_pairs(data, batch_size=256, seed=1)
    assert x0.shape == x1.shape == (1000, 4) and x0.dtype == np.float32
    # every data point is used exactly once
    assert np.allclose(np.sort(x1, axis=0), np.sort(data.astype(np.float32), axis=0))
    assert stats["mean_sq_cost_ot"] < 0.5 * stats["mean_sq_cost_independent"]
    more0, more1, _ = ot_pairs(data, batch_size=256, n_pairs=2500, seed=1)
    assert len(more0) == 2500
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        ot_pairs(data, batch_size=1)


def test_invertibility_report_measures_and_flags():
    flow = _vector_flow("spline", 4)
    report = invertibility_report(flow, n=2000)
    assert report["max_error_float64"] < 1e-12 and not report["flagged"]  # a new flow is the identity
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0, 0.1)
    report = invertibility_report(flow, n=2000, tolerance=1e-12)
    assert 0 < report["max_error_float64"] < report["max_error_float32"]
    assert report["flagged"]


def test_regflow_with_ot_pairs_learns_the_checkerboard(tmp_path):
    """A spline flow trained by RegFlow on exact OT pairs samples the checkerboard with a usable
    ESS (the flow's exact density against the target's; measured 0.42, with 84 % of the samples on
    black squares, at these settings)."""
    target = Checkerboard()
    gen = torch.Generator().manual_seed(7)
    data = target.sample(8192, generator=gen).numpy()
    x0, x1, _ = ot_pairs(data, batch_size=2048, seed=0)
    torch.manual_seed(0)
    flow = build_flow({"transform": "spline", "layers": 6, "hidden": 64, "depth": 2, "bins": 12, "bound": 3.0,
                       "frame": {"kind": "vector", "dim": 2, "scale": 1.0}})
    settings = TrainSettings(steps=800, batch_size=256, lr=2e-3, weight_decay=0.0, ema_decay=0.99,
                             checkpoint_every=800, history_every=400)
    model, _, _ = train(flow, regflow_loss("logdet", lambda_reg=1e-5, target_noise=0.01),
                        {"x0": torch.as_tensor(x0), "x1": torch.as_tensor(x1)}, settings, tmp_path)
    with torch.no_grad():
        x, log_q = model.sample(20_000, generator=torch.Generator().manual_seed(8))
        log_w = -target.energy(x.double()) - log_q
    ess = kish_ess(log_w)
    on_board = float(torch.isfinite(log_w).double().mean())
    print(f"checkerboard: ESS {ess:.3f}, on the board {on_board:.3f}")
    assert on_board > 0.8, on_board
    assert ess > 0.2, ess


def test_pairs_record_their_teacher_and_other_teachers_pairs_are_refused(tmp_path):
    from boltzflow.couplings import PairsTeacherError, check_pairs_teacher, teacher_record

    model = tmp_path / "cnf-seed0" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(b"teacher weights")
    record = teacher_record(model, {"summary": {"steps": 5000, "wall_s": 106.0}},
                            {"ess": 0.035, "e_w1": 0.654, "t_w2": 0.311, "method": "cnf"})
    assert record["train_steps"] == 5000 and record["metrics"] == {"ess": 0.035, "e_w1": 0.654, "t_w2": 0.311}
    assert len(record["digest"]) == 16 and record["model"] == str(model)
    assert check_pairs_teacher({"teacher": record}, model, "cnf.parquet") == record
    model.write_bytes(b"a retrained teacher")  # same path, other weights
    with pytest.raises(PairsTeacherError, match=rf"cnf.parquet: made by teacher .*model.pt \(digest {record['digest']}\), "
                       r"but the teacher is now .*model.pt \(digest [0-9a-f]{16}\); remake the pairs"):
        check_pairs_teacher({"teacher": record}, model, "cnf.parquet")
    with pytest.raises(PairsTeacherError, match="cnf.parquet: the pairs do not record which teacher made them"):
        check_pairs_teacher({"kind": "cnf"}, model, "cnf.parquet")


def test_teacher_quality_floor_names_every_failing_number(tmp_path):
    from boltzflow.couplings import TeacherQualityError, check_teacher_quality, read_teacher_metrics

    metrics = {"ess": 0.002, "e_w1": 12.5, "t_w2": 0.21}
    passed = check_teacher_quality(metrics, {"min_ess": 0.001, "max_e_w1": 20.0, "max_t_w2": None}, "teacher.parquet")
    assert passed == ["ess 0.002 >= min_ess 0.001", "e_w1 12.5 <= max_e_w1 20"]
    with pytest.raises(TeacherQualityError, match=r"teacher.parquet: the teacher fails its quality floor: "
                       r"ess 0.002 < couplings.cnf.quality_floor.min_ess = 0.01; "
                       r"e_w1 12.5 > couplings.cnf.quality_floor.max_e_w1 = 10\."):
        check_teacher_quality(metrics, {"min_ess": 0.01, "max_e_w1": 10.0, "max_t_w2": 0.3}, "teacher.parquet")
    # a metric the table lacks, or NaN, fails its limit rather than passing silently
    with pytest.raises(TeacherQualityError, match="t_w2 nan > "):
        check_teacher_quality({"ess": 0.5, "e_w1": 1.0, "t_w2": float("nan")}, {"max_t_w2": 1.0}, "t")
    with pytest.raises(TeacherQualityError, match="ess nan < "):
        check_teacher_quality({"e_w1": 1.0}, {"min_ess": 0.0}, "t")
    with pytest.raises(ValueError, match="unknown couplings.cnf.quality_floor key"):
        check_teacher_quality(metrics, {"max_ew1": 1.0}, "t")
    assert check_teacher_quality(metrics, {}, "t") == []
    # the metrics file must hold one row
    import pandas as pd

    pd.DataFrame([metrics, metrics]).to_parquet(tmp_path / "two.parquet")
    with pytest.raises(TeacherQualityError, match="two.parquet: a teacher's metrics table needs exactly one row"):
        read_teacher_metrics(tmp_path / "two.parquet")
    pd.DataFrame([metrics]).to_parquet(tmp_path / "one.parquet")
    assert read_teacher_metrics(tmp_path / "one.parquet")["e_w1"] == 12.5
