"""The flowMC-EBM paper's metrics of a trained EBM: split R-hat of its sampler, mode weights and
their errors, and the log-density error on a 2-D grid; plus the late-training spread of the mode
weights (Grenioux, Moulines, Gabrie, arXiv 2306.00684).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from boltzflow.ebm.model import TiltedEBM, grid_log_density
from boltzflow.ebm.settings import EBMSettings
from boltzflow.ebm.train import ebm_sampler, mode_row, step_generator
from boltzflow.evaluation import mode_weights, split_rhat

__all__ = ["evaluate_ebm", "late_training_mse"]


def evaluate_ebm(
    ebm: TiltedEBM,
    flow: nn.Module,
    bank: torch.Tensor,
    settings: EBMSettings,
    *,
    centres: np.ndarray | None = None,
    true_weights: np.ndarray | None = None,
    true_log_prob=None,
    box: tuple[np.ndarray, np.ndarray] | None = None,
    grid_points: int = 300,
    n_eval: int = 4096,
    rhat_chains: int = 128,
    rhat_cycles: int = 32,
    rhat_max_draws: int = 512,
    support_fraction: float = 1e-3,
    seed: int = 0,
    local_state: Mapping[str, Any] | None = None,
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """The paper's metrics of a trained EBM; returns ``(metrics, grid_table_or_None)``.

    - ``rhat_max``: maximum over coordinates of the split R-hat of ``rhat_chains`` chains started
      from the persistent bank and run for ``rhat_cycles`` sampler cycles, the states thinned
      evenly to at most ``rhat_max_draws`` per chain; ``global_acceptance`` / ``local_acceptance``
      of that run. The run must be long: with 8 cycles of 1 i-SIR + 8 MALA steps even an exact
      proposal gives R-hat 1.08 (d = 16) and 1.10 (d = 64), with 32 cycles 1.02.
    - With ``centres``: mode weights of the EBM (grid integration in 2-D, else from every kept
      state of the R-hat run), of the chains' initialisation (flow samples for a flow method, else the
      persistent bank), of the negatives (``n_eval`` bank chains after one sampler call), and the
      MSEs ``mse_init`` (init vs EBM), ``mse_negatives`` (negatives vs EBM), ``mse_ebm`` (EBM vs
      ``true_weights``), plus each against the truth.
    - In 2-D with ``true_log_prob``: the median over grid cells where the true density exceeds
      ``support_fraction`` of its maximum of ``(log p_theta - log p*)^2``, both normalised on the grid.

    ``local_state`` is the local kernel's state at the end of training (its adapted step size).
    """
    gen = step_generator(seed, 10**9)
    sampler = ebm_sampler(settings, flow, local_state)
    metrics: dict[str, float] = {}
    start = bank[torch.randperm(len(bank), generator=gen)[: min(rhat_chains, len(bank))]]
    steps = rhat_cycles * (sampler.n_global + sampler.n_local)
    run = sampler.run(start, ebm.log_prob, rhat_cycles, generator=gen, keep="all",
                      keep_every=math.ceil(steps / rhat_max_draws))
    states = run.states.detach().to(torch.float64).numpy().transpose(1, 0, 2)  # (chains, draws, d)
    metrics["rhat_max"] = float(split_rhat(states).max())
    metrics["global_acceptance"] = run.global_acceptance
    metrics["local_acceptance"] = run.local_acceptance
    table = None
    grid = lp = None
    if ebm.dim == 2 and box is not None:
        grid, lp, cell = grid_log_density(ebm.log_prob64, box[0], box[1], grid_points)
        table = pd.DataFrame({"x": grid[:, 0], "y": grid[:, 1], "log_p_model": lp})
        if true_log_prob is not None:
            _, lp_true, _ = grid_log_density(true_log_prob, box[0], box[1], grid_points)
            table["log_p_true"] = lp_true
            support = lp_true >= lp_true.max() + math.log(support_fraction)
            metrics["log_density_sq_error_median"] = float(np.median((lp[support] - lp_true[support]) ** 2))
            metrics["grid_support_cells"] = int(support.sum())
    if centres is not None:
        if grid is not None:
            w_ebm = mode_weights(grid, centres, log_w=lp)
        else:
            w_ebm = mode_weights(run.states.reshape(-1, ebm.dim).detach().numpy(), centres)  # every kept state
        take = bank[torch.randperm(len(bank), generator=gen)[: min(n_eval, len(bank))]]
        if settings.uses_flow:
            with torch.no_grad():
                init, _ = flow.sample(len(take), generator=gen)
        else:
            init = take
        neg = sampler.run(take, ebm.log_prob, settings.n_cycles, generator=gen, keep="last").x
        w_init = mode_weights(init.detach().numpy(), centres)
        w_neg = mode_weights(neg.detach().numpy(), centres)
        metrics.update(mode_row("ebm", w_ebm))
        metrics.update(mode_row("init", w_init))
        metrics.update(mode_row("negatives", w_neg))
        metrics["mse_init"] = float(np.mean((w_init - w_ebm) ** 2))
        metrics["mse_negatives"] = float(np.mean((w_neg - w_ebm) ** 2))
        if true_weights is not None:
            truth = np.asarray(true_weights, dtype=np.float64)
            metrics.update(mode_row("true", truth))
            metrics["mse_ebm"] = float(np.mean((w_ebm - truth) ** 2))
            metrics["mse_init_truth"] = float(np.mean((w_init - truth) ** 2))
            metrics["mse_negatives_truth"] = float(np.mean((w_neg - truth) ** 2))
    return metrics, table



def late_training_mse(history: pd.DataFrame, true_weights: np.ndarray, fraction: float = 0.2) -> dict[str, float]:
    """The mode-weight MSE of the EBM against the truth at every history row of the last
    ``fraction`` of training: its median and maximum (``mse_ebm_late_median``,
    ``mse_ebm_late_max``) and the number of rows (``late_rows``). The EBM's weights move from
    batch to batch, so the last model alone can be lucky or unlucky; these say how it fared late
    in training. Empty when the history has no ``ebm_w*`` columns."""
    truth = np.asarray(true_weights, dtype=np.float64)
    columns = [f"ebm_w{k}" for k in range(len(truth))]
    if history.empty or not set(columns) <= set(history.columns):
        return {}
    last = float(history["iteration"].max())
    late = history[history["iteration"] >= (1.0 - fraction) * last]
    errors = ((late[columns].to_numpy(dtype=np.float64) - truth) ** 2).mean(axis=1)
    return {"mse_ebm_late_median": float(np.median(errors)), "mse_ebm_late_max": float(errors.max()),
            "late_rows": int(len(errors))}
