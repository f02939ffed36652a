"""bench_flows at toy sizes (table shape, rates, ratios) and the "same size" claim behind its
comparison with zuko (trainable-parameter counts)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import zuko
from boltzflow.bench import SAMPLING_ENGINES, TRAINING_ENGINES, bench_flows
from boltzflow.flows import build_flow


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def table():
    threads = torch.get_num_threads()
    lines: list[str] = []
    frame = bench_flows(dim=6, layers=2, hidden=16, batch_sizes=(64,), repeats=1, threads=1, cnf_samples=8,
                        train_steps=2, train_batch=32, warmup_steps=1, log=lines.append)
    assert torch.get_num_threads() == threads, "bench_flows must restore the thread count"
    return frame, lines


def test_bench_flows_rows_columns_and_rates(table):
    frame, lines = table
    for column in ("section", "engine", "objective", "batch", "samples_per_s", "pairs_per_s", "seconds_median",
                   "repeats", "threads", "parameters", "parameters_used", "baseline", "ratio", "ratio_min",
                   "ratio_max", "ratio_vs_zuko_coupling", "ratio_vs_cnf_float32", "ratio_vs_cnf_float64"):
        assert column in frame.columns, column
    sampling = frame[frame.section == "sampling"]
    training = frame[frame.section == "training"]
    assert list(sampling.engine) == list(SAMPLING_ENGINES)
    assert list(zip(training.engine, training.objective)) == list(TRAINING_ENGINES)
    assert len(frame) == len(SAMPLING_ENGINES) + len(TRAINING_ENGINES)
    # the coupling flows run at the requested batch, the CNF at its own sample count
    assert set(sampling[sampling.engine.str.startswith("cnf")].batch) == {8}
    assert set(sampling[~sampling.engine.str.startswith("cnf")].batch) == {64}
    assert set(training.batch) == {32}
    for column, rows in (("samples_per_s", sampling), ("pairs_per_s", training), ("seconds_median", frame)):
        values = rows[column].to_numpy(dtype=float)
        assert np.isfinite(values).all() and (values > 0).all(), column
    assert (frame.threads == 1).all() and (frame.repeats == 1).all()
    assert (frame.parameters > 0).all()
    ours = sampling[sampling.engine.str.startswith("boltzflow")]
    assert (ours.baseline == "zuko_nsf").all()
    for column in ("ratio", "ratio_min", "ratio_max", "ratio_vs_zuko_coupling", "ratio_vs_cnf_float32",
                   "ratio_vs_cnf_float64"):
        assert np.isfinite(ours[column].to_numpy(dtype=float)).all() and (ours[column] > 0).all(), column
    # one round: the ratio is that round's rate ratio, and its range collapses onto it
    assert np.allclose(ours.ratio, ours.ratio_min) and np.allclose(ours.ratio, ours.ratio_max)
    spline = ours[ours.engine == "boltzflow_spline"].iloc[0]
    zuko_nsf = sampling[sampling.engine == "zuko_nsf"].iloc[0]
    assert math.isclose(spline.ratio, spline.samples_per_s / zuko_nsf.samples_per_s, rel_tol=1e-9)
    regflow = training[training.objective == "regflow"]
    assert (regflow.baseline == "mle").all() and np.isfinite(regflow.ratio.to_numpy(dtype=float)).all()
    assert (sampling[sampling.engine.str.startswith("cnf")].nfe > 0).all()
    assert len(lines) == 2  # one progress line per round and section


def test_same_size_means_comparable_trainable_parameters(table):
    """Ours and zuko's coupling NSF built with the same (features, transforms, hidden, depth, bins).

    zuko's NSF(passes=2) conditioner is a masked MLP over all d inputs with d (3K - 1) outputs,
    the half it must not use masked to zero; ours sees only the conditioning half and outputs only
    the transformed half. So zuko counts about twice our first- and last-layer weights: 5,454,828
    against 3,123,702 (ratio 1.75) at the paper size (d 63, 12 layers, 256 x 2, 8 bins) and
    5,460 / 3,018 = 1.81 at the toy size. Its weights that can act (mask nonzero) match ours
    within 1 % (3,098,604 / 3,123,702 = 0.992) and within 5 % at the toy size (3,156 / 3,018),
    and zuko's true coupling construction (NICE with spline transforms) has exactly our layer
    shapes.
    """
    frame, _ = table
    counts = frame[frame.section == "sampling"].set_index("engine")
    ours, nsf = counts.loc["boltzflow_spline"], counts.loc["zuko_nsf"]
    assert 1.5 < nsf.parameters / ours.parameters < 2.0
    assert 0.95 < nsf.parameters_used / ours.parameters < 1.05
    assert counts.loc["zuko_coupling"].parameters == ours.parameters

    # the paper size, built directly (construction only, no sampling)
    flow = build_flow({"transform": "spline", "layers": 12, "hidden": 256, "depth": 2, "bins": 8,
                       "frame": {"kind": "vector", "dim": 63, "scale": 1.0}})
    paper = zuko.flows.NSF(features=63, transforms=12, hidden_features=[256, 256], bins=8, passes=2)
    masked = sum(int((~layer.mask.bool()).sum()) for layer in paper.modules()
                 if isinstance(layer, torch.nn.Linear) and isinstance(getattr(layer, "mask", None), torch.Tensor))
    ratio = _trainable(paper) / _trainable(flow)
    assert 1.7 < ratio < 1.8, ratio
    assert 0.98 < (_trainable(paper) - masked) / _trainable(flow) < 1.02


def test_bench_flows_rejects_bad_sizes():
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        bench_flows(repeats=0)
    with pytest.raises(ValueError, match="batch_sizes"):
        bench_flows(batch_sizes=())
