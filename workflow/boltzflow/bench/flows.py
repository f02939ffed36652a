"""Sampling and training throughput of the coupling flows against zuko and the CNF, side by side.

:func:`bench_flows` interleaves the engines round by round and reports within-round ratios.
"""

from __future__ import annotations

import math
import statistics
import time
from functools import partial
from typing import Any, Callable

import pandas as pd
import torch
from torch import nn

from boltzflow.cnf import VelocityField, sample_with_log_prob
from boltzflow.flows import build_flow
from boltzflow.training import mle_loss, regflow_loss

__all__ = ["bench_flows", "SAMPLING_ENGINES", "TRAINING_ENGINES"]

#: engines of the sampling section, in the order they are timed within a round
SAMPLING_ENGINES = ("boltzflow_spline", "boltzflow_affine", "zuko_nsf", "zuko_coupling", "cnf_float32",
                    "cnf_float64")
#: (engine, objective) pairs of the training section
TRAINING_ENGINES = (("boltzflow_spline", "regflow"), ("boltzflow_spline", "mle"),
                    ("boltzflow_affine", "regflow"), ("boltzflow_affine", "mle"))

_OURS = ("boltzflow_spline", "boltzflow_affine")
_BASELINES = ("zuko_nsf", "zuko_coupling", "cnf_float32", "cnf_float64")


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _used_by_zuko(module: nn.Module) -> int:
    """Trainable parameters that can affect the output: masked-out weights of zuko's
    ``MaskedLinear`` layers (multiplied by a 0/1 mask on every call) are left out."""
    total = _trainable(module)
    for layer in module.modules():
        mask = getattr(layer, "mask", None)
        if isinstance(layer, nn.Linear) and isinstance(mask, torch.Tensor) and mask.shape == layer.weight.shape:
            total -= int((~mask.bool()).sum())
    return total


def _our_flow(transform: str, dim: int, layers: int, hidden: int, depth: int, bins: int, seed: int) -> nn.Module:

    flow = build_flow({"transform": transform, "layers": layers, "hidden": hidden, "depth": depth, "bins": bins,
                       "frame": {"kind": "vector", "dim": dim, "scale": 1.0}, "dtype": "float32"})
    # The output layers start at zero (every layer the identity). Nudge them so the timed flow
    # transforms its inputs like a trained one; the cost does not depend on the values.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in flow.layers:
            out = layer.conditioner.out
            out.weight.copy_(0.01 * torch.randn(out.weight.shape, generator=gen))
    return flow


def _zuko_flows(dim: int, layers: int, hidden: int, depth: int, bins: int, seed: int) -> dict[str, nn.Module]:
    import zuko
    from zuko.transforms import MonotonicRQSTransform

    torch.manual_seed(seed)  # zuko draws its initial weights from the global generator
    nsf = zuko.flows.NSF(features=dim, transforms=layers, hidden_features=[hidden] * depth, bins=bins, passes=2)
    coupling = zuko.flows.NICE(features=dim, transforms=layers, hidden_features=[hidden] * depth,
                               univariate=MonotonicRQSTransform, shapes=[(bins,), (bins,), (bins - 1,)])
    return {"zuko_nsf": nsf, "zuko_coupling": coupling}


def _zuko_sampler(flow: nn.Module) -> Callable[[int], tuple[torch.Tensor, torch.Tensor]]:
    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        dist = flow()
        if hasattr(dist, "rsample_and_log_prob"):  # one pass for both (zuko >= 1.0)
            return dist.rsample_and_log_prob((n,))
        x = dist.sample((n,))
        return x, dist.log_prob(x)
    return sample


def _median_range(values: list[float]) -> tuple[float, float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, math.nan
    return statistics.median(finite), min(finite), max(finite)


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _bench_sampling(*, dim: int, layers: int, hidden: int, depth: int, bins: int, batch_sizes: tuple[int, ...],
                    repeats: int, cnf_hidden: int, cnf_layers: int, cnf_samples: int, seed: int,
                    log: Callable[[str], Any]) -> list[dict[str, Any]]:

    models: dict[str, nn.Module] = {
        "boltzflow_spline": _our_flow("spline", dim, layers, hidden, depth, bins, seed),
        "boltzflow_affine": _our_flow("affine", dim, layers, hidden, depth, bins, seed),
        **_zuko_flows(dim, layers, hidden, depth, bins, seed),
    }
    torch.manual_seed(seed)
    cnf = VelocityField(dim, hidden=cnf_hidden, layers=cnf_layers)
    cnf_stats: dict[str, list[int]] = {"cnf_float32": [], "cnf_float64": []}

    def cnf_sampler(dtype: torch.dtype, key: str) -> Callable[[int], Any]:
        def sample(n: int):
            stats: dict[str, Any] = {}
            out = sample_with_log_prob(cnf, n, dtype=dtype, stats=stats)  # default (1e-7) tolerances
            cnf_stats[key].append(int(stats["nfe"]))
            return out
        return sample

    samplers: dict[str, Callable[[int], Any]] = {
        "boltzflow_spline": models["boltzflow_spline"].sample,
        "boltzflow_affine": models["boltzflow_affine"].sample,
        "zuko_nsf": _zuko_sampler(models["zuko_nsf"]),
        "zuko_coupling": _zuko_sampler(models["zuko_coupling"]),
        "cnf_float32": cnf_sampler(torch.float32, "cnf_float32"),
        "cnf_float64": cnf_sampler(torch.float64, "cnf_float64"),
    }
    models["cnf_float32"] = models["cnf_float64"] = cnf
    # the CNF is timed once per round at its own, small sample count
    sizes = {e: (cnf_samples,) if e.startswith("cnf") else tuple(batch_sizes) for e in SAMPLING_ENGINES}
    seconds: dict[tuple[str, int], list[float]] = {(e, n): [] for e in SAMPLING_ENGINES for n in sizes[e]}

    with torch.no_grad():
        # Untimed first calls: lazy initialisation, and the allocator's state. glibc malloc raises
        # its mmap and trim thresholds to the largest block freed so far, and how often freed
        # memory returns to the OS (to come back as page faults) changed our spline flow's rate
        # by up to 30 % at a fixed batch; one call of every coupling flow at every size first
        # puts all rounds in the same, steady state. The CNF warms up on a few samples: its
        # blocks are small.
        for engine in SAMPLING_ENGINES:
            for n in (min(8, cnf_samples),) if engine.startswith("cnf") else sizes[engine]:
                x, log_q = samplers[engine](n)
                if not bool(torch.isfinite(log_q).all()):
                    raise RuntimeError(f"{engine}: non-finite log-densities in the warm-up samples")
        for engine in ("cnf_float32", "cnf_float64"):
            cnf_stats[engine].clear()
        for round_ in range(repeats):
            for engine in SAMPLING_ENGINES:
                for n in sizes[engine]:
                    elapsed, (x, log_q) = _timed(partial(samplers[engine], n))
                    if x.shape[0] != n or log_q.shape != (n,):
                        raise RuntimeError(f"{engine} returned shapes {tuple(x.shape)}, {tuple(log_q.shape)} for {n}")
                    seconds[(engine, n)].append(elapsed)
            log(f"sampling round {round_ + 1}/{repeats}: " + ", ".join(
                f"{e}@{n} {n / seconds[(e, n)][-1]:.0f}/s" for e in SAMPLING_ENGINES for n in sizes[e]))

    def rate(engine: str, n: int, round_: int) -> float:
        return n / seconds[(engine, n)][round_]

    rows = []
    for engine in SAMPLING_ENGINES:
        for n in sizes[engine]:
            median_s = statistics.median(seconds[(engine, n)])
            row: dict[str, Any] = {
                "section": "sampling", "engine": engine, "objective": "", "batch": n,
                "samples_per_s": n / median_s, "pairs_per_s": math.nan, "seconds_median": median_s,
                "repeats": repeats, "dtype": "float64" if engine == "cnf_float64" else "float32",
                "parameters": _trainable(models[engine]),
                "parameters_used": _used_by_zuko(models[engine]),
                "nfe": statistics.median(cnf_stats[engine]) if engine in cnf_stats else math.nan,
                "baseline": "", "ratio": math.nan, "ratio_min": math.nan, "ratio_max": math.nan,
            }
            if engine in _OURS:
                for baseline in _BASELINES:
                    # each round's ratio uses that round's baseline time at the matching size
                    # (the CNF's only size is cnf_samples: samples per second are compared)
                    base_n = cnf_samples if baseline.startswith("cnf") else n
                    ratios = [rate(engine, n, r) / rate(baseline, base_n, r) for r in range(repeats)]
                    med, low, high = _median_range(ratios)
                    row.update({f"ratio_vs_{baseline}": med, f"ratio_vs_{baseline}_min": low,
                                f"ratio_vs_{baseline}_max": high})
                row.update({"baseline": "zuko_nsf", "ratio": row["ratio_vs_zuko_nsf"],
                            "ratio_min": row["ratio_vs_zuko_nsf_min"], "ratio_max": row["ratio_vs_zuko_nsf_max"]})
            rows.append(row)
    return rows


def _bench_training(*, dim: int, layers: int, hidden: int, depth: int, bins: int, repeats: int, train_steps: int,
                    train_batch: int, seed: int, warmup_steps: int, log: Callable[[str], Any]) -> list[dict[str, Any]]:

    gen = torch.Generator().manual_seed(seed)
    # a fixed pool of batches, drawn before timing so the random numbers are not timed
    pool = [{"x0": torch.randn(train_batch, dim, generator=gen), "x1": 1.5 * torch.randn(train_batch, dim, generator=gen)}
            for _ in range(max(train_steps, 1))]
    objectives = {"regflow": regflow_loss("logdet"), "mle": mle_loss()}
    setups = {}
    for engine, objective in TRAINING_ENGINES:
        flow = _our_flow(engine.removeprefix("boltzflow_"), dim, layers, hidden, depth, bins, seed)
        flow.train()
        params = [p for p in flow.parameters() if p.requires_grad]
        # the same optimiser settings as boltzflow.training.train
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=True)
        setups[(engine, objective)] = (flow, params, optimizer, objectives[objective])

    def steps(key: tuple[str, str], count: int) -> None:
        flow, params, optimizer, objective = setups[key]
        step_gen = torch.Generator().manual_seed(seed)
        for i in range(count):
            loss, _ = objective(flow, pool[i % len(pool)], step_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            optimizer.step()

    for key in TRAINING_ENGINES:
        steps(key, warmup_steps)
    seconds: dict[tuple[str, str], list[float]] = {key: [] for key in TRAINING_ENGINES}
    for round_ in range(repeats):
        for key in TRAINING_ENGINES:
            elapsed, _ = _timed(partial(steps, key, train_steps))
            seconds[key].append(elapsed)
        log(f"training round {round_ + 1}/{repeats}: " + ", ".join(
            f"{e}/{o} {train_steps * train_batch / seconds[(e, o)][-1]:.0f} pairs/s" for e, o in TRAINING_ENGINES))

    pairs = train_steps * train_batch
    rows = []
    for engine, objective in TRAINING_ENGINES:
        median_s = statistics.median(seconds[(engine, objective)])
        row: dict[str, Any] = {
            "section": "training", "engine": engine, "objective": objective, "batch": train_batch,
            "samples_per_s": math.nan, "pairs_per_s": pairs / median_s, "seconds_median": median_s,
            "repeats": repeats, "dtype": "float32", "parameters": _trainable(setups[(engine, objective)][0]),
            "nfe": math.nan, "baseline": "", "ratio": math.nan, "ratio_min": math.nan, "ratio_max": math.nan,
        }
        row["parameters_used"] = row["parameters"]
        if objective == "regflow":
            # RegFlow's forward pass against MLE's inverse pass, per round
            ratios = [seconds[(engine, "mle")][r] / seconds[(engine, "regflow")][r] for r in range(repeats)]
            med, low, high = _median_range(ratios)
            row.update({"baseline": "mle", "ratio": med, "ratio_min": low, "ratio_max": high})
        rows.append(row)
    return rows


def bench_flows(*, dim: int = 60, layers: int = 12, hidden: int = 256, depth: int = 2, bins: int = 8,
                batch_sizes: tuple[int, ...] = (1000, 10000), repeats: int = 3, threads: int = 1,
                cnf_hidden: int = 256, cnf_layers: int = 4, cnf_samples: int = 200, train_steps: int = 30,
                train_batch: int = 256, seed: int = 0, warmup_steps: int = 3,
                log: Callable[[str], Any] = print) -> pd.DataFrame:
    """Sampling (with exact log-densities) and training throughput of our coupling flows against
    zuko's coupling NSFs and the exact-divergence CNF.

    Every engine runs on the same ``threads`` CPU threads, in float32 unless its name says
    otherwise, at the same size: ``layers`` coupling layers on ``dim`` features, conditioners
    with ``depth`` hidden layers of width ``hidden``, ``bins`` spline bins (zuko's spline bound is
    5, as is ours by default); the CNF is ``VelocityField(dim, cnf_hidden, cnf_layers)``,
    untrained, so it needs fewer solver steps than a trained one would and its rates are an
    upper bound.

    Parameters
    ----------
    dim, layers, hidden, depth, bins : int
        The size of every coupling flow (see the module docstring for the zuko equivalents).
    batch_sizes : tuple of int
        Samples per call for the coupling flows; each size is one row per engine.
    repeats : int
        Rounds; in each, every engine and size is timed once, in a fixed order.
    threads : int
        ``torch.set_num_threads`` for the run (restored afterwards).
    cnf_hidden, cnf_layers : int
        Size of the CNF's velocity field.
    cnf_samples : int
        Samples per CNF call (one call per round and dtype, default tolerances 1e-7).
    train_steps, train_batch : int
        Optimiser steps timed per round and engine, and pairs (or data points) per step.
    seed : int
        Seeds the weights and the data.
    warmup_steps : int
        Untimed optimiser steps per training engine before the first round.
    log : callable
        Receives one progress line per round and section.

    Returns
    -------
    pandas.DataFrame
        One row per engine and batch size. Columns: ``section`` (``sampling`` or ``training``),
        ``engine``, ``objective`` (training: ``regflow`` or ``mle``), ``batch``,
        ``samples_per_s`` (sampling) or ``pairs_per_s`` (training; batch times steps over the
        median time), ``seconds_median`` (per call, or per ``train_steps`` steps), ``repeats``,
        ``threads``, ``dtype``, ``parameters`` (trainable), ``parameters_used`` (less zuko's
        masked-out weights), ``nfe`` (CNF: velocity-and-divergence evaluations per call),
        ``baseline``, ``ratio``, ``ratio_min``, ``ratio_max`` (median and range over rounds of
        ours / baseline: samples per second against ``zuko_nsf`` for sampling, pairs per second
        of RegFlow against MLE for training), and for our sampling rows
        ``ratio_vs_<baseline>[_min|_max]`` against each of ``zuko_nsf``, ``zuko_coupling``,
        ``cnf_float32`` and ``cnf_float64``.

    :func:`bench_flows` times, in one process and at one thread count:

    - **sampling with the exact log-density** (``section == "sampling"``): our spline and affine
      coupling flows (:meth:`boltzflow.flows.Flow.sample`), two zuko flows of the same size, and the
      flow-matching CNF with its exact divergence (:func:`boltzflow.cnf.sample_with_log_prob`);
    - **training throughput** (``section == "training"``): one optimiser step of RegFlow
      (:func:`boltzflow.training.regflow_loss` with the log-det regulariser) and of maximum
      likelihood (:func:`boltzflow.training.mle_loss`), for both of our architectures.

    The machine's speed drifts (other processes, frequency scaling), so engines are interleaved:
    round ``r`` times every engine once, ratios are taken within a round, and the table reports the
    median ratio over rounds with its minimum and maximum.

    The zuko baselines
    ------------------
    ``zuko_nsf`` is ``zuko.flows.NSF(features, transforms, hidden_features, bins, passes=2)``, the
    coupling NSF the paper configurations are sized after. zuko builds it as a masked
    autoregressive transform with two passes and defines it in the density direction (data ->
    noise), so a sample is an inverse: two conditioner passes per layer, and the log-density of the
    sample one more (``NormalizingFlow.rsample_and_log_prob`` calls ``transform.inv.call_and_ladj``,
    which for these transforms evaluates the inverse and then the forward log-Jacobian at the
    result). Its conditioners are full-width masked MLPs (all ``d`` inputs in, ``d`` times the spline
    parameters out, the unused half masked away), which is also why zuko counts about 1.75 times our
    trainable parameters at the same size while the weights it actually uses match ours within 1 %.

    ``zuko_coupling`` is the same spline family built from zuko's true coupling transform,
    ``zuko.flows.NICE(..., univariate=MonotonicRQSTransform, shapes=[(K,), (K,), (K - 1,)])`` (both
    documented constructor arguments): one conditioner pass per layer for the sample and one for its
    log-density, and conditioners with exactly our layer shapes. It is the fastest documented way we
    found to sample a coupling NSF with its exact log-density in zuko, so it is the stricter baseline.
    """
    for name, value in (("dim", dim), ("layers", layers), ("hidden", hidden), ("depth", depth), ("bins", bins),
                        ("repeats", repeats), ("threads", threads), ("cnf_hidden", cnf_hidden),
                        ("cnf_layers", cnf_layers), ("cnf_samples", cnf_samples), ("train_steps", train_steps),
                        ("train_batch", train_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if dim < 2 or bins < 2:
        raise ValueError(f"need dim >= 2 and bins >= 2, got dim={dim}, bins={bins}")
    batch_sizes = tuple(int(n) for n in batch_sizes)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sizes = dict(dim=dim, layers=layers, hidden=hidden, depth=depth, bins=bins)
        rows = _bench_sampling(**sizes, batch_sizes=batch_sizes, repeats=repeats, cnf_hidden=cnf_hidden,
                               cnf_layers=cnf_layers, cnf_samples=cnf_samples, seed=seed, log=log)
        rows += _bench_training(**sizes, repeats=repeats, train_steps=train_steps, train_batch=train_batch,
                                seed=seed, warmup_steps=warmup_steps, log=log)
    finally:
        torch.set_num_threads(previous)
    frame = pd.DataFrame(rows)
    frame.insert(frame.columns.get_loc("repeats") + 1, "threads", threads)
    return frame
