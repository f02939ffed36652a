"""The flow's coordinate frame as a Boltzmann-generator design choice, measured side by side.

:func:`bench_frames` trains the same flow by maximum likelihood on the same training frames in
each frame kind (and seed), draws importance-weighted proposals, and reports the ESS, the
proposal energies and the proposals lost outside a chart, with each frame's ESS as a ratio to
the first kind's.
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

from boltzflow.evaluation.weights import kish_ess
from boltzflow.flows import BoltzmannGenerator, latent_frame
from boltzflow.training.fit import fit_flow, flow_architecture
from boltzflow.training.loop import TrainSettings

__all__ = ["bench_frames"]


def bench_frames(train_x: np.ndarray, topology, energy: Callable[[torch.Tensor], torch.Tensor], *,
                 kinds: Sequence[str], transform: str, architecture: Mapping[str, Any],
                 train: Mapping[str, Any], n_samples: int, seeds: Sequence[int],
                 reference_energy: np.ndarray | None = None, log: logging.Logger | None = None) -> pd.DataFrame:
    """One row per (frame kind, seed): an MLE ``transform`` flow with ``architecture`` trained with
    ``train`` (:class:`~boltzflow.training.loop.TrainSettings` keys) on ``train_x`` ``(n, 3 N)`` (nm),
    then ``n_samples`` proposals scored with ``energy`` (reduced, float64).

    A kind is a ``flows.frame.kind`` (the internal frame with its default, standardised torsions),
    or ``internal-<torsion map>`` for the internal frame with another torsion map.

    Columns: ``kind``, ``seed``, ``dim``, ``train_s``, ``final_nll`` (per frame, on the hyperplane
    in that frame's latent -- not comparable across frames), ``ess`` (Kish, over all proposals),
    ``invalid_fraction`` (proposals outside the chart or with a non-finite density),
    ``median_energy`` (valid proposals, kT), ``reference_median_energy`` (of ``reference_energy``),
    ``ess_ratio`` (this row's ESS over the first kind's, same seed).
    """
    log = log or logging.getLogger("boltzflow.bench")
    if not kinds:
        raise ValueError("bench_frames needs at least one frame kind")
    n_atoms = train_x.shape[1] // 3
    reference_median = float(np.median(reference_energy)) if reference_energy is not None else float("nan")
    rows = []
    for kind in kinds:
        frame_kind, _, torsion_map = kind.partition("-")       # internal-marginal: another torsion map
        frame = latent_frame(train_x, n_atoms, kind=frame_kind, topology=topology,
                             torsion_map=torsion_map or "standardised")
        arch = flow_architecture(transform, architecture, frame)
        for seed in seeds:
            steps = int(train.get("steps", TrainSettings.steps))
            every = min(100, steps)                       # progress in the log every 100 steps
            settings = TrainSettings.from_config({**dict(train), "seed": int(seed), "history_every": every,
                                                  "checkpoint_every": -(-steps // every) * every})
            start = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="bench-frames-") as folder:
                flow, history, _ = fit_flow("mle", arch, settings, Path(folder), train_x=train_x, log=log)
            train_s = time.perf_counter() - start
            draw = BoltzmannGenerator(flow, energy).draw(n_samples, batch_size=min(n_samples, 10_000),
                                                          seed=int(seed), log=log)
            log_w = np.full(draw.n_drawn, -np.inf)
            log_w[:len(draw.energy)] = draw.log_w
            rows.append({"kind": kind, "seed": int(seed), "dim": int(flow.dim), "train_s": train_s,
                         "final_nll": float(history["nll"].iloc[-1]) if "nll" in history else float("nan"),
                         "ess": kish_ess(log_w), "invalid_fraction": draw.n_invalid / draw.n_drawn,
                         "median_energy": float(np.median(draw.energy)) if len(draw.energy) else float("nan"),
                         "reference_median_energy": reference_median})
            log.info("frame %s seed %d: ESS %.3g, %.1f%% invalid, median energy %.1f kT, %.0f s training",
                     kind, seed, rows[-1]["ess"], 100 * rows[-1]["invalid_fraction"], rows[-1]["median_energy"],
                     train_s)
    table = pd.DataFrame(rows)
    first = table[table.kind == kinds[0]].set_index("seed")["ess"]
    table["ess_ratio"] = table["ess"] / table["seed"].map(first)
    return table
