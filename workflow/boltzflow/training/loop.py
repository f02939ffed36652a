"""The training loop shared by flows (RegFlow, MLE) and the CNF teacher.

AdamW, linear warm-up then cosine decay, gradient clipping, an exponential moving average (EMA) of
the weights, atomic checkpoints every few steps from which a killed run resumes to the same result,
and non-finite losses or gradients skipped, counted and logged (too many in a row abort). Batches
and noise come from generators seeded by ``(seed, epoch)`` and ``(seed, step)``, so a resumed run
sees the same batches.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from boltzflow.io import atomic_path, load_resume_state
from boltzflow.training.objectives import Objective

__all__ = ["TrainSettings", "train", "invertibility_report", "EMA", "guarded_step", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "train_state.pt"


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (the objective's own settings live with the objective)."""

    steps: int = 10_000
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    schedule: str = "cosine"
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every: int = 1000
    history_every: int = 100
    seed: int = 0
    max_nonfinite_in_a_row: int = 50

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every", "history_every", "max_nonfinite_in_a_row"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.grad_clip > 0):
            raise ValueError("lr and grad_clip must be > 0 and weight_decay >= 0")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.checkpoint_every % self.history_every:
            raise ValueError(f"checkpoint_every ({self.checkpoint_every}) must be a multiple of history_every "
                             f"({self.history_every}) so that a resumed run writes the same history")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "TrainSettings":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in cfg.items() if k in fields})

    def learning_rate(self, step: int) -> float:
        """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to 0 (or constant)."""
        warmup = int(self.warmup_fraction * self.steps)
        if step < warmup:
            return self.lr * (step + 1) / warmup
        if self.schedule == "constant":
            return self.lr
        progress = (step - warmup) / max(1, self.steps - warmup)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


# ---- EMA ----

class EMA:
    """Exponential moving average of a module's floating-point parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self._pairs = None

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        if self._pairs is None:  # the live tensors behind the state dict do not change
            state = module.state_dict(keep_vars=True)
            keys = [k for k, v in state.items() if v.is_floating_point()]
            self._pairs = ([self.shadow[k] for k in keys], [state[k].detach() for k in keys])
        torch._foreach_lerp_(self._pairs[0], self._pairs[1], 1.0 - self.decay)

    def load(self, shadow: Mapping[str, torch.Tensor]) -> None:
        for key, value in shadow.items():
            self.shadow[key].copy_(value)

    def copy_to(self, module: nn.Module) -> nn.Module:
        """A deep copy of ``module`` carrying the averaged weights."""
        averaged = copy.deepcopy(module)
        averaged.load_state_dict(self.shadow)
        return averaged


# ---- the loop ----

def _batch_indices(n: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Indices of minibatch ``step``: epochs are seeded permutations of ``range(n)``."""
    per_epoch = max(1, n // batch_size)
    epoch, position = divmod(step, per_epoch)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen)
    if batch_size >= n:
        return perm
    return perm[position * batch_size:(position + 1) * batch_size]


def _step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed((int(seed) * 2_654_435_761 + step) % (2 ** 63))
    return gen


def train(
    model: nn.Module,
    objective: Objective,
    data: Mapping[str, torch.Tensor],
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    *,
    identity: str = "",
    validate: Callable[[nn.Module], float] | None = None,
    keep_best: bool = False,
    log: logging.Logger | None = None,
) -> tuple[nn.Module, pd.DataFrame, dict[str, Any]]:
    """Train ``model`` in place on ``data`` (tensors with a common first dimension, moved to the
    model's dtype/device by the caller) and return ``(ema_model, history, summary)``.

    ``validate`` (the EMA model -> a loss on held-out data) is called at every history row and
    logged as ``val_loss``; with ``keep_best`` the EMA weights of the lowest ``val_loss`` are
    returned instead of the last ones (early stopping without stopping: the run still takes its
    steps, so its cost is fixed), and the summary names their step.

    ``checkpoint_dir/train_state.pt`` is written atomically every ``checkpoint_every`` steps and at
    the end; if it exists with the same ``identity`` (a hash of everything that defines the run)
    training resumes from it and ends with the same weights as an uninterrupted run. A checkpoint
    of another run is ignored with a warning.
    """

    log = log or logging.getLogger("boltzflow.training")
    names = list(data)
    n = len(data[names[0]])
    if any(len(data[k]) != n for k in names):
        raise ValueError(f"training tensors differ in length: {({k: len(v) for k, v in data.items()})}")
    if n == 0:
        raise ValueError("no training data")
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    # foreach: one fused kernel per update over all parameter tensors (CPU defaults to a loop)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, foreach=True)
    ema = EMA(model, settings.ema_decay)
    ck_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    if keep_best and validate is None:
        raise ValueError("keep_best needs a validate function")
    step, rows, skipped_total = 0, [], 0
    best: dict[str, Any] = {"val_loss": math.inf, "step": None, "shadow": None}
    state = load_resume_state(ck_path, identity, log, map_location=device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        ema.load(state["ema"])
        step, skipped_total = int(state["step"]), int(state["skipped"])
        if state.get("best_shadow") is not None:
            best = {"val_loss": float(state["best_val_loss"]), "step": int(state["best_step"]),
                    "shadow": state["best_shadow"]}
        rows = [dict(zip(state["history_columns"], r)) for r in state["history"]]
        log.info("resuming from %s at step %d of %d", ck_path, step, settings.steps)

    def save_checkpoint() -> None:
        columns = list(rows[0]) if rows else []
        payload = {"identity": identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                   "ema": ema.shadow, "step": step, "skipped": skipped_total,
                   "best_val_loss": best["val_loss"], "best_step": best["step"], "best_shadow": best["shadow"],
                   "history_columns": columns, "history": [[float(r[c]) for c in columns] for r in rows]}
        with atomic_path(ck_path) as tmp:
            torch.save(payload, tmp)

    model.train()
    window: dict[str, list[float]] = {}
    in_a_row = 0
    skipped_window = 0
    start = time.time()
    start_step = step
    wall_offset = rows[-1]["wall_s"] if rows else 0.0
    while step < settings.steps:
        lr = settings.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = _batch_indices(n, settings.batch_size, step, settings.seed).to(device)
        batch = {k: v.index_select(0, idx) for k, v in data.items()}
        loss, terms = objective(model, batch, _step_generator(settings.seed, step, device))
        optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(params, settings.grad_clip, foreach=True)
            finite = bool(torch.isfinite(norm))
        if finite:
            optimizer.step()
            ema.update(model)
            in_a_row = 0
            for key, value in {"loss": float(loss.detach()), "grad_norm": float(norm), **terms}.items():
                window.setdefault(key, []).append(value)
        else:
            optimizer.zero_grad(set_to_none=True)
            in_a_row += 1
            skipped_window += 1
            skipped_total += 1
            log.warning("step %d: non-finite loss or gradient; step skipped (%d in a row, %d in total)",
                        step, in_a_row, skipped_total)
            if in_a_row >= settings.max_nonfinite_in_a_row:
                raise RuntimeError(f"training diverged: {in_a_row} non-finite steps in a row at step {step} "
                                   f"(lr {lr:.3g}); lower the learning rate or check the data")
        step += 1
        if step % settings.history_every == 0 or step == settings.steps:
            elapsed = time.time() - start
            row = {"step": step, "epoch": step * settings.batch_size / n, "lr": lr,
                   "wall_s": wall_offset + elapsed, "skipped_steps": skipped_window}
            row.update({k: float(np.mean(v)) for k, v in window.items()})
            if validate is not None:
                row["val_loss"] = _validated(validate, ema.copy_to(model))
                if keep_best and row["val_loss"] < best["val_loss"]:
                    best = {"val_loss": row["val_loss"], "step": step,
                            "shadow": {k: v.detach().clone() for k, v in ema.shadow.items()}}
            rows.append(row)
            rate = (step - start_step) / max(elapsed, 1e-9)
            eta = (settings.steps - step) / max(rate, 1e-9)
            log.info("step %d/%d (%.0f%%) loss %.5g lr %.3g, %.1f steps/s, ETA %.0f s%s", step, settings.steps,
                     100.0 * step / settings.steps, row.get("loss", float("nan")), lr, rate, eta,
                     f", {skipped_window} skipped" if skipped_window else "")
            window, skipped_window = {}, 0
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            save_checkpoint()
    model.eval()
    averaged = ema.copy_to(model)
    history = pd.DataFrame(rows)
    summary = {"steps": step, "skipped_steps": skipped_total, "wall_s": float(history["wall_s"].iloc[-1])
               if len(history) else 0.0}
    if keep_best and best["shadow"] is not None:
        averaged.load_state_dict(best["shadow"])
        summary.update(best_step=best["step"], best_val_loss=best["val_loss"])
        log.info("keeping the EMA weights of step %d (validation loss %.5g; last %.5g)", best["step"],
                 best["val_loss"], rows[-1]["val_loss"])
    averaged.eval()
    return averaged, history, summary


@torch.no_grad()
def _validated(validate: Callable[[nn.Module], float], averaged: nn.Module) -> float:
    """``validate`` on the EMA model in eval mode; a non-finite value counts as ``+inf``."""
    averaged.eval()
    value = float(validate(averaged))
    return value if math.isfinite(value) else math.inf


# ---- invertibility ----

@torch.no_grad()
def invertibility_report(flow: nn.Module, n: int = 10_000, seed: int = 0, tolerance: float = 1e-3) -> dict[str, Any]:
    """Max and mean ``|f^-1(f(z)) - z|`` over ``n`` prior draws, in float32 and float64.

    ``flagged`` is true when the float32 maximum exceeds ``tolerance`` (latent units): such a
    model's log-densities are not trustworthy and every table that uses it says so.
    """
    report: dict[str, Any] = {"n": int(n), "tolerance": float(tolerance)}
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, flow.dim, generator=gen, dtype=torch.float64)
    for name, dtype in (("float32", torch.float32), ("float64", torch.float64)):
        model = copy.deepcopy(flow).to(dtype)
        y, _ = model(z.to(dtype))
        back, _ = model.inverse(y)
        err = (back.to(torch.float64) - z).abs()
        finite = torch.isfinite(err)
        report[f"max_error_{name}"] = float(err[finite].max()) if finite.any() else float("inf")
        report[f"mean_error_{name}"] = float(err[finite].mean()) if finite.any() else float("inf")
        report[f"nonfinite_{name}"] = int((~finite).any(dim=1).sum())
    report["flagged"] = bool(report["max_error_float32"] > tolerance or report["nonfinite_float32"] > 0)
    return report


def guarded_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, parameters, clip: float) -> bool:
    """One optimizer step on ``loss`` with the gradient norm of ``parameters`` clipped to ``clip``;
    skipped (returns False) when the loss or the gradient norm is not finite, so one bad batch
    cannot put a NaN into the weights."""
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return False
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), clip)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return False
    optimizer.step()
    return True
