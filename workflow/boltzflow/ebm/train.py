"""flowMC-EBM training: the method's sampler over persistent chains and
the joint training of the EBM and its flow (Grenioux, Moulines, Gabrie, arXiv 2306.00684,
Algorithm 1), checkpointed so that a killed run resumes to the same result.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from boltzflow.ebm.model import TiltedEBM, build_ebm, ebm_mode_weights
from boltzflow.ebm.settings import EBMSettings
from boltzflow.evaluation import mode_weights
from boltzflow.flows import build_flow
from boltzflow.io import atomic_path, load_resume_state
from boltzflow.mcmc import MALA, ULA, GlobalLocal
from boltzflow.training import guarded_step

__all__ = ["CHECKPOINT_NAME", "ebm_sampler", "step_generator", "mode_row", "train_ebm"]

CHECKPOINT_NAME = "ebm_state.pt"


def ebm_sampler(settings: EBMSettings, flow: nn.Module | None, local_state: Mapping[str, Any] | None = None) -> GlobalLocal:
    """The method's sampler over persistent chains (flow-assisted when ``global_kind`` is not none)."""
    if settings.local_kernel == "mala":
        local = MALA(settings.step_size, target_acceptance=settings.target_acceptance, adapt=settings.adapt_step)
    else:
        local = ULA(settings.step_size)
    if local_state:
        local.load_state_dict(dict(local_state))
    proposal = flow if settings.uses_flow else None
    return GlobalLocal(local, proposal=proposal, global_kind=settings.global_kind if proposal is not None else "none",
                       n_particles=settings.n_particles, n_global=settings.n_global if proposal is not None else 0,
                       n_local=settings.n_local)


def step_generator(seed: int, step: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed((int(seed) * 2_654_435_761 + 7919 * step + 1) % (2**63))
    return gen


def _initial_bank(settings: EBMSettings, flow: nn.Module, data: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if settings.init == "flow":
        with torch.no_grad():
            x, _ = flow.sample(settings.n_persistent, generator=gen)
        return x.detach().to(torch.float32)
    lo, hi = data.min(0).values, data.max(0).values
    u = torch.rand(settings.n_persistent, data.shape[1], generator=gen, dtype=data.dtype)
    return lo + (hi - lo) * u


def mode_row(prefix: str, weights: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_w{k}": float(w) for k, w in enumerate(weights)}


def _training_step(data: torch.Tensor, bank: torch.Tensor, ebm: TiltedEBM, flow: nn.Module,
                   opt_ebm: torch.optim.Optimizer, opt_flow: torch.optim.Optimizer, sampler: GlobalLocal,
                   settings: EBMSettings, it: int, factor: float) -> tuple[dict[str, float], int]:
    """Iteration ``it`` of the paper's Algorithm 1; updates ``bank`` in place and returns the
    logged terms and the number of updates skipped for a non-finite loss (``factor``: the
    learning-rate factor of this iteration, logged).

    1. positives: a minibatch of data;
    2. negatives: a minibatch of persistent chains advanced by the method's sampler on
       ``p_theta`` (flowMC: i-SIR or IMH moves with the flow as proposal interleaved with adaptive
       MALA; ULA-EBM: unadjusted Langevin only), written back to the persistent bank;
    3. EBM step on ``mean E(pos) - mean E(neg)`` (the negative log-likelihood gradient), plus an
       optional L2 penalty on the energies;
    4. flow step by maximum likelihood on the negatives (forward KL from the EBM to the flow).
    """
    n, dim = data.shape
    gen = step_generator(settings.seed, it)
    pos = data[torch.randint(0, n, (settings.batch_size,), generator=gen)]
    idx = torch.randperm(settings.n_persistent, generator=gen)[: settings.batch_size]
    keep = "all" if settings.negatives == "all" else "last"
    run = sampler.run(bank[idx], ebm.log_prob, settings.n_cycles, generator=gen, keep=keep)
    bank[idx] = run.x.detach().to(bank.dtype)
    neg = run.states.reshape(-1, dim)[:: settings.thin] if keep == "all" else run.x
    neg = neg.detach().to(torch.float32)
    e_pos, e_neg = ebm.energy(pos), ebm.energy(neg)
    loss = e_pos.mean() - e_neg.mean()
    if settings.l2_energy > 0:
        loss = loss + settings.l2_energy * (e_pos.square().mean() + e_neg.square().mean())
    terms = {"loss_ebm": float(loss.detach()), "energy_pos": float(e_pos.detach().mean()),
             "energy_neg": float(e_neg.detach().mean()), "global_acceptance": run.global_acceptance,
             "local_acceptance": run.local_acceptance, "step_size": float(sampler.local.step_size),
             "lr_ebm": settings.lr_ebm * factor}
    skipped = int(not guarded_step(loss, opt_ebm, ebm.parameters(), settings.grad_clip))
    if settings.uses_flow:
        nll = -flow.log_prob(neg).mean()
        skipped += int(not guarded_step(nll, opt_flow, flow.parameters(), settings.grad_clip))
        terms["flow_nll"] = float(nll.detach())
    return terms, skipped


def train_ebm(
    data: torch.Tensor,
    settings: EBMSettings,
    energy_config: Mapping[str, Any],
    flow_config: Mapping[str, Any],
    checkpoint_dir: str | Path,
    *,
    centres: np.ndarray | None = None,
    box: tuple[np.ndarray, np.ndarray] | None = None,
    grid_points: int = 120,
    identity: str = "",
    log: logging.Logger | None = None,
) -> tuple[TiltedEBM, nn.Module, torch.Tensor, pd.DataFrame, dict[str, Any]]:
    """Train a tilted EBM and its flow on ``data`` ``(N, d)``; returns ``(ebm, flow, bank, history, summary)``.

    ``energy_config`` holds the :class:`EnergyNet` sizes; ``flow_config`` a :func:`build_flow`
    config without its frame (a vector frame with the scale of ``rho`` is added). The scale of
    ``rho`` is the square root of the largest per-coordinate variance of the data (the paper's
    choice). With ``centres`` (``(K, d)``, the modes of a synthetic target) the history records
    the mode weights of the EBM (integrated on a grid over ``box`` in 2-D, else from the
    persistent chains) and of the persistent chains. ``checkpoint_dir/ebm_state.pt`` is written
    every ``checkpoint_every`` iterations; a run with the same ``identity`` resumes from it.

    The model is the tilted EBM ``p_theta(x) = exp(-E_theta(x)) rho(x) / Z_theta`` with ``rho`` the
    density the flow has before training (``N(0, s^2 I)``): ``E`` starts at exactly 0 and the flow at
    the identity, so the two agree at step 0. Each iteration is :func:`_training_step` (the paper's
    Algorithm 1). Minibatches and MCMC noise come from generators seeded by ``(seed, iteration)``
    and the whole state (networks, optimisers, persistent chains, adapted step size, history) is
    checkpointed, so a killed run resumes to the same result.
    """

    log = log or logging.getLogger("boltzflow.ebm")
    data = torch.as_tensor(data, dtype=torch.float32)
    if data.ndim != 2 or len(data) < 2 or not torch.isfinite(data).all():
        raise ValueError(f"data must be a finite (N, d) array with N >= 2, got shape {tuple(data.shape)}")
    n, dim = data.shape
    torch.manual_seed(settings.seed)
    scale = float(data.to(torch.float64).var(0).max().sqrt())
    ebm = build_ebm({**dict(energy_config), "dim": dim, "base_scale": scale})
    flow = build_flow({**dict(flow_config), "frame": {"kind": "vector", "dim": dim, "scale": scale}})
    opt_ebm = torch.optim.Adam(ebm.parameters(), lr=settings.lr_ebm)
    opt_flow = torch.optim.Adam(flow.parameters(), lr=settings.lr_flow)
    bank = _initial_bank(settings, flow, data, step_generator(settings.seed, -1))
    local_state: dict[str, Any] = {}
    it, rows = 0, []
    ck_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    state = load_resume_state(ck_path, identity, log)
    if state is not None:
        ebm.load_state_dict(state["ebm"])
        flow.load_state_dict(state["flow"])
        opt_ebm.load_state_dict(state["opt_ebm"])
        opt_flow.load_state_dict(state["opt_flow"])
        bank = state["bank"]
        local_state = dict(state["local"])
        it = int(state["iteration"])
        rows = [dict(zip(state["history_columns"], r)) for r in state["history"]]
        log.info("resuming from %s at iteration %d of %d", ck_path, it, settings.iterations)
    sampler = ebm_sampler(settings, flow, local_state)

    def save_checkpoint() -> None:
        columns = list(rows[0]) if rows else []
        payload = {"identity": identity, "ebm": ebm.state_dict(), "flow": flow.state_dict(),
                   "opt_ebm": opt_ebm.state_dict(), "opt_flow": opt_flow.state_dict(), "bank": bank,
                   "local": sampler.local.state_dict(), "iteration": it, "history_columns": columns,
                   "history": [[float(r[c]) for c in columns] for r in rows]}
        with atomic_path(ck_path) as tmp:
            torch.save(payload, tmp)

    window: dict[str, list[float]] = {}
    start, start_it = time.time(), it
    wall_offset = rows[-1]["wall_s"] if rows else 0.0
    skipped = 0
    while it < settings.iterations:
        factor = settings.lr_factor(it)  # set from the iteration alone, so a resumed run follows the same schedule
        for optimizer, lr in ((opt_ebm, settings.lr_ebm), (opt_flow, settings.lr_flow)):
            for group in optimizer.param_groups:
                group["lr"] = lr * factor
        terms, failed = _training_step(data, bank, ebm, flow, opt_ebm, opt_flow, sampler, settings, it, factor)
        skipped += failed
        for key, value in terms.items():
            window.setdefault(key, []).append(value)
        it += 1
        if it % settings.history_every == 0 or it == settings.iterations:
            elapsed = time.time() - start
            row = {"iteration": it, "epoch": it * settings.batch_size / n, "wall_s": wall_offset + elapsed,
                   "skipped_updates": skipped}
            row.update({k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in window.items()})
            if centres is not None:
                row.update(mode_row("ebm", ebm_mode_weights(ebm, bank, centres, box, grid_points)))
                row.update(mode_row("chains", mode_weights(bank.numpy(), centres)))
            rows.append(row)
            rate = (it - start_it) / max(elapsed, 1e-9)
            log.info("iteration %d/%d (%.0f%%) loss %.4g, acceptance global %.3f local %.3f, %.1f it/s, ETA %.0f s",
                     it, settings.iterations, 100.0 * it / settings.iterations, row["loss_ebm"],
                     row["global_acceptance"], row["local_acceptance"], rate,
                     (settings.iterations - it) / max(rate, 1e-9))
            window, skipped = {}, 0
        if it % settings.checkpoint_every == 0 or it == settings.iterations:
            save_checkpoint()
    ebm.eval()
    flow.eval()
    history = pd.DataFrame(rows)
    summary = {"iterations": it, "wall_s": float(history["wall_s"].iloc[-1]) if len(history) else 0.0,
               "base_scale": scale, "final_step_size": float(sampler.local.step_size),
               "local_state": sampler.local.state_dict()}
    return ebm, flow, bank, history, summary
