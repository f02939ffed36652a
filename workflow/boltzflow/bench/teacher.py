"""What a longer training budget buys the CNF teacher of RegFlow, measured as a Boltzmann generator.

:func:`bench_teacher` trains the flow-matching teacher for each number of steps in a ladder and
each prior pairing (independent, minibatch OT), and scores every teacher like the workflow scores
a flow: proposals with their exact ``log q``, Kish ESS, energy W1 (reweighted and raw) and torsion
W2 against MD test frames. It also reports how straight the learned paths are: the RMS distance
per dimension between a 10-step RK4 solve and a tight adaptive one, which is the error of the
cheap reflow-pair solver.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from boltzflow.cnf import CNFSampler, integrate
from boltzflow.evaluation.scoring import score_peptide_samples
from boltzflow.flows import BoltzmannGenerator, frame_from_config, to_latent
from boltzflow.training.fit import PRIOR_PAIRINGS, fit_cnf
from boltzflow.training.loop import TrainSettings

__all__ = ["bench_teacher"]

#: the reported metrics of each teacher, from score_peptide_samples
SCORED = ("ess", "e_w1", "t_w2", "e_w1_raw")


def bench_teacher(train_x: np.ndarray, frame_cfg: Mapping[str, Any], topology, energy: Callable[[torch.Tensor], torch.Tensor],
                  *, reference_x: np.ndarray, reference_energy: np.ndarray, steps: Sequence[int],
                  pairings: Sequence[str], hidden: int, layers: int, train: Mapping[str, Any], n_samples: int,
                  sampler: Mapping[str, Any], score: Mapping[str, Any], seeds: Sequence[int] = (0,),
                  log: logging.Logger | None = None) -> pd.DataFrame:
    """One row per (prior pairing, training steps, seed).

    Each teacher is a fresh :func:`~boltzflow.training.fit.fit_cnf` run of ``steps`` steps (its own
    warm-up and cosine schedule, as the workflow would train it) on the latent ``train_x``
    ``(n, 3 N)`` in the frame ``frame_cfg`` (a fitted frame, as ``read_frame`` gives it), with ``train`` as :class:`~boltzflow.training.loop.TrainSettings`
    keys. ``n_samples`` proposals are drawn with :class:`~boltzflow.cnf.CNFSampler` (``sampler``:
    ``method``, ``atol``, ``rtol``, ``batch_size``) and scored by
    :func:`~boltzflow.evaluation.scoring.score_peptide_samples` with ``score`` settings.

    Columns: ``pairing``, ``steps``, ``seed``, ``train_s``, ``sampling_s``, ``ess``, ``e_w1``,
    ``t_w2``, ``e_w1_raw``, ``invalid_fraction``, ``rk4_10_rms`` (RMS per dimension between
    RK4 with 10 steps and dopri5 at 1e-7 on 256 prior draws: how straight the paths are).
    """
    log = log or logging.getLogger("boltzflow.bench")
    if not steps or not pairings:
        raise ValueError("bench_teacher needs at least one step count and one prior pairing")
    unknown = sorted(set(pairings) - set(PRIOR_PAIRINGS))
    if unknown:
        raise ValueError(f"unknown prior pairing(s) {unknown}; choose from {list(PRIOR_PAIRINGS)}")
    latent = to_latent(train_x, frame_cfg)
    frame = frame_from_config(frame_cfg)
    rows = []
    for pairing in pairings:
        for n_steps in steps:
            for seed in seeds:
                every = min(100, int(n_steps))
                settings = TrainSettings.from_config({**dict(train), "steps": int(n_steps), "seed": int(seed),
                                                      "history_every": every,
                                                      "checkpoint_every": -(-int(n_steps) // every) * every})
                start = time.perf_counter()
                with tempfile.TemporaryDirectory(prefix="bench-teacher-") as folder:
                    model, _, _ = fit_cnf(latent, hidden=hidden, layers=layers, settings=settings,
                                          checkpoint_dir=Path(folder), prior_pairing=pairing, log=log)
                train_s = time.perf_counter() - start
                straightness = _rk4_rms(model, seed)
                start = time.perf_counter()
                cnf = CNFSampler(model, frame, **{k: sampler[k] for k in ("method", "atol", "rtol", "batch_size")})
                draw = BoltzmannGenerator(cnf, energy).draw(n_samples, batch_size=int(sampler["batch_size"]),
                                                            seed=int(seed), log=log)
                sampling_s = time.perf_counter() - start
                metrics, _ = score_peptide_samples(draw.x, draw.energy, draw.log_q, n_drawn=draw.n_drawn,
                                                   reference_x=reference_x, reference_energy=reference_energy,
                                                   topology=topology, settings=score)
                rows.append({"pairing": pairing, "steps": int(n_steps), "seed": int(seed), "train_s": train_s,
                             "sampling_s": sampling_s, **{key: float(metrics[key]) for key in SCORED},
                             "invalid_fraction": draw.n_invalid / draw.n_drawn, "rk4_10_rms": straightness})
                log.info("teacher %s, %d steps, seed %d: ESS %.3g, E-W1 %.3g, T-W2 %.3g, RK4x10 RMS %.2g; "
                         "%.0f s training, %.0f s sampling", pairing, n_steps, seed, rows[-1]["ess"],
                         rows[-1]["e_w1"], rows[-1]["t_w2"], straightness, train_s, sampling_s)
    return pd.DataFrame(rows)


def _rk4_rms(model: torch.nn.Module, seed: int, n: int = 256) -> float:
    """RMS per dimension between a 10-step RK4 solve and dopri5 at 1e-7 from ``n`` prior draws."""
    x0 = torch.randn(n, model.dim, generator=torch.Generator().manual_seed(10_000 + seed))
    tight = integrate(model, x0, method="dopri5", atol=1e-7, rtol=1e-7)
    coarse = integrate(model, x0, method="rk4", steps=10)
    return float((coarse.double() - tight.double()).pow(2).mean().sqrt())
