"""flowMC-EBM: an energy-based model trained jointly with a flow that drives its MCMC.

Grenioux, Moulines, Gabrie, "Balanced training of energy-based models with adaptive flow
sampling" (arXiv 2306.00684). The model is the *tilted* EBM

    p_theta(x) = exp(-E_theta(x)) rho(x) / Z_theta,

with ``rho`` the density the companion flow has before training (its prior pushed through the
identity, here ``N(0, s^2 I)`` with ``s`` the flow frame's scale). ``E`` starts at exactly 0 (a
zero output layer) and the flow at the identity (zero-initialised couplings), so the EBM and the
flow agree at step 0. Each iteration of :func:`train_ebm` (the paper's Algorithm 1):

1. positives: a minibatch of data;
2. negatives: a minibatch of persistent chains advanced by the method's sampler on ``p_theta``
   (flowMC: i-SIR or IMH moves with the flow as proposal interleaved with adaptive MALA; ULA-EBM:
   unadjusted Langevin only), written back to the persistent bank;
3. EBM step on ``mean E(pos) - mean E(neg)`` (the negative log-likelihood gradient), plus an
   optional L2 penalty on the energies;
4. flow step by maximum likelihood on the negatives (forward KL from the EBM to the flow).

Minibatches and MCMC noise come from generators seeded by ``(seed, iteration)``, and the whole
state (networks, optimisers, persistent chains, adapted step size, history) is checkpointed, so a
killed run resumes to the same result. :func:`evaluate_ebm` computes the paper's metrics.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from boltzflow.evaluation import mode_weights, split_rhat
from boltzflow.flows import build_flow
from boltzflow.io import ArtifactError, atomic_path, load_resume_state
from boltzflow.mcmc import MALA, ULA, GlobalLocal
from boltzflow.targets import exact_sampler_names, load_target
from boltzflow.training import guarded_step

__all__ = ["EnergyNet", "TiltedEBM", "EBMSettings", "METHODS", "build_ebm", "ebm_sampler", "train_ebm",
           "save_ebm_model", "load_ebm_model", "grid_log_density", "evaluate_ebm", "CHECKPOINT_NAME",
           "METHOD_DEFAULTS", "RunConfig", "resolve_run", "Dataset", "load_dataset", "known_dataset_names", "check_overrides",
           "late_training_mse"]

METHODS = ("flowmc", "ula")
CHECKPOINT_NAME = "ebm_state.pt"
_LOG_2PI = math.log(2.0 * math.pi)
_ACTIVATIONS = {"silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


class EnergyNet(nn.Module):
    """An MLP energy ``E(x)``: ``depth`` hidden layers of ``hidden`` units, scalar output that starts at 0."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, activation: str = "silu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {', '.join(_ACTIVATIONS)}")
        if dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"dim, hidden and depth must be >= 1, got {dim}, {hidden}, {depth}")
        widths = [dim] + [hidden] * depth
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x)).squeeze(-1)


class TiltedEBM(nn.Module):
    """``log p(x) = -E(x) + log N(x; 0, s^2 I)`` up to ``log Z`` (see the module docstring)."""

    def __init__(self, energy: EnergyNet, base_scale: float, config: Mapping[str, Any]):
        super().__init__()
        if not (math.isfinite(base_scale) and base_scale > 0):
            raise ValueError(f"base_scale must be finite and > 0, got {base_scale}")
        self.energy = energy
        self.base_scale = float(base_scale)
        self._config = dict(config)

    @property
    def dim(self) -> int:
        return self.energy.dim

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def log_base(self, x: torch.Tensor) -> torch.Tensor:
        s = self.base_scale
        return -0.5 * (x / s).square().sum(-1) - x.shape[-1] * (math.log(s) + 0.5 * _LOG_2PI)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-density in the network's dtype (differentiable; what the MCMC targets)."""
        x = x.to(self.energy.out.weight.dtype)
        return -self.energy(x) + self.log_base(x)

    @torch.no_grad()
    def log_prob64(self, x: torch.Tensor, chunk: int = 65_536) -> torch.Tensor:
        """Unnormalised log-density in float64 (the network's output promoted, the base in float64)."""
        parts = []
        for rows in x.split(chunk):
            e = self.energy(rows.to(self.energy.out.weight.dtype)).to(torch.float64)
            parts.append(-e + self.log_base(rows.to(torch.float64)))
        return torch.cat(parts)


def build_ebm(config: Mapping[str, Any]) -> TiltedEBM:
    """A :class:`TiltedEBM` from ``{"dim", "hidden", "depth", "activation", "base_scale"}``."""
    cfg = {"hidden": 128, "depth": 3, "activation": "silu", **dict(config)}
    known = {"dim", "hidden", "depth", "activation", "base_scale"}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise ValueError(f"unknown EBM setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    missing = sorted({"dim", "base_scale"} - set(cfg))
    if missing:
        raise ValueError(f"EBM config needs {', '.join(missing)}")
    net = EnergyNet(int(cfg["dim"]), int(cfg["hidden"]), int(cfg["depth"]), str(cfg["activation"]))
    return TiltedEBM(net, float(cfg["base_scale"]), cfg)


@dataclass(frozen=True)
class EBMSettings:
    """Everything that defines one training run (see ``ebm`` in the config schema)."""

    method: str
    iterations: int
    batch_size: int = 256
    n_persistent: int = 8192
    lr_ebm: float = 1e-3
    lr_flow: float = 1e-3
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.01
    l2_energy: float = 0.0
    grad_clip: float = 100.0
    # sampler: n_cycles x (n_global global steps, then n_local local steps)
    n_cycles: int = 5
    n_global: int = 1
    n_local: int = 24
    n_particles: int = 64
    global_kind: str = "isir"
    local_kernel: str = "mala"
    step_size: float = 0.01
    target_acceptance: float = 0.574
    adapt_step: bool = True
    negatives: str = "all"
    thin: int = 1
    init: str = "flow"
    history_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.batch_size >= 1 and self.n_persistent >= self.batch_size,
             f"need 1 <= batch_size <= n_persistent, got {self.batch_size} and {self.n_persistent}"),
            (self.global_kind in ("isir", "imh", "none"), f"global_kind must be isir, imh or none, got {self.global_kind!r}"),
            (self.local_kernel in ("mala", "ula"), f"local_kernel must be mala or ula, got {self.local_kernel!r}"),
            (self.negatives in ("all", "last"), f"negatives must be all or last, got {self.negatives!r}"),
            (self.lr_schedule in ("constant", "cosine"), f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}"),
            (0 < self.lr_final_fraction <= 1, f"lr_final_fraction must be in (0, 1], got {self.lr_final_fraction}"),
            (self.init in ("flow", "uniform"), f"init must be flow or uniform, got {self.init!r}"),
            (self.n_cycles >= 1 and self.n_local >= 0 and self.n_global >= 0 and self.n_global + self.n_local >= 1,
             "the sampler needs n_cycles >= 1 and at least one step per cycle"),
            (self.thin >= 1 and self.history_every >= 1 and self.checkpoint_every >= 1,
             "thin, history_every and checkpoint_every must be >= 1"),
            (self.step_size > 0 and self.lr_ebm > 0 and self.lr_flow > 0, "step_size and learning rates must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"EBM settings: {message}")

    @property
    def uses_flow(self) -> bool:
        return self.global_kind != "none"

    def lr_factor(self, iteration: int) -> float:
        """The factor on both learning rates at ``iteration`` (0-based)."""
        if self.lr_schedule == "constant" or self.iterations <= 1:
            return 1.0
        progress = min(iteration / (self.iterations - 1), 1.0)
        return self.lr_final_fraction + (1.0 - self.lr_final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "EBMSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown EBM training setting(s) {', '.join(unknown)}")
        return cls(**dict(cfg))


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


def _generator(seed: int, step: int) -> torch.Generator:
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


def save_ebm_model(path: str | Path, ebm: TiltedEBM, flow: nn.Module, extra: Mapping[str, Any] | None = None) -> None:
    """Write the EBM and its flow as plain tensors plus JSON-able configs (atomically)."""

    payload = {"ebm_config": ebm.config(), "ebm_state": ebm.state_dict(),
               "flow_config": flow.config(), "flow_state": flow.state_dict(), **(dict(extra) if extra else {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_ebm_model(path: str | Path) -> tuple[TiltedEBM, nn.Module, dict[str, Any]]:
    """``(ebm, flow, rest_of_payload)`` from :func:`save_ebm_model` (``weights_only=True``)."""

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable EBM checkpoint ({err})") from err
    needed = {"ebm_config", "ebm_state", "flow_config", "flow_state"}
    if not isinstance(payload, dict) or not needed <= set(payload):
        raise ArtifactError(f"{path}: an EBM checkpoint needs entries {', '.join(sorted(needed))}")
    try:
        ebm = build_ebm(payload["ebm_config"])
        ebm.load_state_dict(payload["ebm_state"])
        flow = build_flow(payload["flow_config"])
        flow.load_state_dict(payload["flow_state"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ArtifactError(f"{path}: the saved weights do not fit the saved architecture ({err})") from err
    ebm.eval()
    flow.eval()
    rest = {k: v for k, v in payload.items() if k not in needed}
    return ebm, flow, rest


def grid_log_density(log_prob64, lo: np.ndarray, hi: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Points of an ``n x n`` grid over the box ``[lo, hi]`` (2-D), the log-density normalised on
    the grid (a Riemann sum of ``exp(log_prob64)``), and the cell area."""
    xs = np.linspace(lo[0], hi[0], n)
    ys = np.linspace(lo[1], hi[1], n)
    grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
    cell = float((xs[1] - xs[0]) * (ys[1] - ys[0]))
    lp = log_prob64(torch.as_tensor(grid, dtype=torch.float64)).cpu().numpy()
    finite = np.isfinite(lp)
    lp_norm = lp - (np.logaddexp.reduce(lp[finite]) + math.log(cell))
    return grid, lp_norm, cell


def _mode_row(prefix: str, weights: np.ndarray) -> dict[str, float]:
    return {f"{prefix}_w{k}": float(w) for k, w in enumerate(weights)}


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
    bank = _initial_bank(settings, flow, data, _generator(settings.seed, -1))
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
        gen = _generator(settings.seed, it)
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
        skipped += not guarded_step(loss, opt_ebm, ebm.parameters(), settings.grad_clip)
        if settings.uses_flow:
            nll = -flow.log_prob(neg).mean()
            skipped += not guarded_step(nll, opt_flow, flow.parameters(), settings.grad_clip)
            terms["flow_nll"] = float(nll.detach())
        for key, value in terms.items():
            window.setdefault(key, []).append(value)
        it += 1
        if it % settings.history_every == 0 or it == settings.iterations:
            elapsed = time.time() - start
            row = {"iteration": it, "epoch": it * settings.batch_size / n, "wall_s": wall_offset + elapsed,
                   "skipped_updates": skipped}
            row.update({k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in window.items()})
            if centres is not None:
                row.update(_mode_row("ebm", _ebm_mode_weights(ebm, bank, centres, box, grid_points)))
                row.update(_mode_row("chains", mode_weights(bank.numpy(), centres)))
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


def _ebm_mode_weights(ebm: TiltedEBM, bank: torch.Tensor, centres: np.ndarray,
                      box: tuple[np.ndarray, np.ndarray] | None, grid_points: int) -> np.ndarray:
    if ebm.dim == 2 and box is not None:
        grid, lp, _ = grid_log_density(ebm.log_prob64, box[0], box[1], grid_points)
        return mode_weights(grid, centres, log_w=lp)
    return mode_weights(bank.numpy(), centres)


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
    gen = _generator(seed, 10**9)
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
        metrics.update(_mode_row("ebm", w_ebm))
        metrics.update(_mode_row("init", w_init))
        metrics.update(_mode_row("negatives", w_neg))
        metrics["mse_init"] = float(np.mean((w_init - w_ebm) ** 2))
        metrics["mse_negatives"] = float(np.mean((w_neg - w_ebm) ** 2))
        if true_weights is not None:
            truth = np.asarray(true_weights, dtype=np.float64)
            metrics.update(_mode_row("true", truth))
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


# ---- configuration and datasets ----

#: Sampler settings of each method (the paper's Table for the 2-D mixture); ebm.<method> in the
#: config and ebm.per_dataset.<dataset>.<method> override them key by key.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "flowmc": {"n_cycles": 5, "n_global": 1, "n_local": 24, "n_particles": 64, "global_kind": "isir",
               "local_kernel": "mala", "step_size": 0.01, "target_acceptance": 0.574, "adapt_step": True,
               "negatives": "all", "thin": 1, "init": "flow"},
    "ula": {"n_cycles": 1, "n_global": 0, "n_local": 512, "n_particles": 2, "global_kind": "none",
            "local_kernel": "ula", "step_size": 0.125**2 / 2, "target_acceptance": 0.574, "adapt_step": False,
            "negatives": "last", "thin": 1, "init": "uniform"},
}


@dataclass(frozen=True)
class RunConfig:
    """The resolved settings of one (dataset, method, seed) run."""

    settings: EBMSettings
    energy: dict[str, Any]
    flow: dict[str, Any]
    n_data: int
    epochs: float

    def as_dict(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "energy": self.energy, "flow": self.flow,
                "n_data": self.n_data, "epochs": self.epochs}


def check_overrides(ebm_cfg: Mapping[str, Any], dataset: str) -> None:
    """Raise ``ValueError`` naming the config path if ``ebm.per_dataset.<dataset>`` has a key that
    ``ebm.train``, ``ebm.energy`` or ``ebm.flow`` do not know (the sampler sections are checked
    by the schema)."""
    over = dict(ebm_cfg.get("per_dataset", {}).get(dataset, {}))
    for section in ("train", "energy", "flow"):
        known = set(ebm_cfg[section])
        unknown = sorted(set(over.get(section, {})) - known)
        if unknown:
            raise ValueError(f"ebm.per_dataset.{dataset}.{section}: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")


def resolve_run(ebm_cfg: Mapping[str, Any], dataset: str, method: str, seed: int,
                n_data: int | None = None) -> RunConfig:
    """Merge ``ebm.*``, the method's defaults and ``ebm.per_dataset.<dataset>`` into one run's
    settings; unknown keys raise ``ValueError`` naming the config path. ``n_data`` (the size of a
    user's array) replaces the configured number of points, which sets the iterations per epoch."""
    if method not in METHODS:
        raise ValueError(f"ebm.methods: unknown method {method!r}; known: {', '.join(METHODS)}")
    check_overrides(ebm_cfg, dataset)
    over = dict(ebm_cfg.get("per_dataset", {}).get(dataset, {}))
    train = {**ebm_cfg["train"], **over.get("train", {})}
    sampler = {**METHOD_DEFAULTS[method], **ebm_cfg.get(method, {}), **over.get(method, {})}
    energy = {**ebm_cfg["energy"], **over.get("energy", {})}
    flow = {**ebm_cfg["flow"], **over.get("flow", {})}
    n_data = int(n_data if n_data is not None else over.get("n_data", ebm_cfg["n_data"]))
    epochs = float(train.pop("epochs"))
    iterations = max(1, math.ceil(epochs * n_data / int(train["batch_size"])))
    try:
        settings = EBMSettings.from_config({**train, **sampler, "method": method, "iterations": iterations,
                                            "seed": int(seed)})
    except (TypeError, ValueError) as err:
        raise ValueError(f"ebm settings of dataset {dataset!r}, method {method!r}: {err}") from err
    return RunConfig(settings, energy, flow, n_data, epochs)


@dataclass
class Dataset:
    """Training data of an EBM run and what is known about its density."""

    name: str
    x: np.ndarray                              # (N, d) float64
    centres: np.ndarray | None = None          # (K, d) mode centres of a mixture target
    weights: np.ndarray | None = None          # (K,) their true weights
    log_prob: Any = None                       # exact normalised log-density (torch, float64) or None
    box: tuple[np.ndarray, np.ndarray] | None = None  # plotting / integration box (2-D)


def _read_array(path: str | Path) -> np.ndarray:

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: user data file not found")
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            x = np.loadtxt(path, delimiter=",", ndmin=2)
        elif path.suffix == ".parquet":
            x = pd.read_parquet(path).to_numpy()
        else:
            raise ArtifactError(f"{path}: user data must be .npy, .csv or .parquet")
    except ArtifactError:
        raise
    except Exception as err:
        raise ArtifactError(f"{path}: cannot read user data ({err})") from err
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ArtifactError(f"{path}: user data must be an (N, d) array with N >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ArtifactError(f"{path}: user data holds {int((~np.isfinite(x)).sum())} non-finite values")
    return x


def known_dataset_names(ebm_cfg: Mapping[str, Any]) -> set[str]:
    """Names ``ebm.datasets`` may use: synthetic targets with exact samplers and ``ebm.user_data`` entries."""

    return set(exact_sampler_names()) | set(ebm_cfg.get("user_data", {}))


def load_dataset(ebm_cfg: Mapping[str, Any], name: str, n_data: int, seed: int = 0) -> Dataset:
    """The data of ``ebm.datasets`` entry ``name``: a user array, or ``n_data`` exact samples of a
    synthetic target (seeded by ``seed``)."""

    user = ebm_cfg.get("user_data", {})
    if name in user:
        x = _read_array(user[name])
        return Dataset(name, x, box=_box(x) if x.shape[1] == 2 else None)
    overrides = {"weights": tuple(ebm_cfg["mixture_weights"])} if name == "mixture2d_weights" else {}
    target = load_target(name, **overrides)
    gen = torch.Generator().manual_seed(int(seed))
    try:
        x = target.sample(int(n_data), generator=gen).to(torch.float64).numpy()
    except NotImplementedError as err:
        raise ValueError(f"ebm.datasets: target {name!r} has no exact sampler; give data in ebm.user_data") from err
    centres = getattr(target, "means", None)
    weights = getattr(target, "weights", None)
    if target.log_z is not None:
        def log_prob(x, _t=target):
            return -_t.energy(x.to(torch.float64)) - _t.log_z
    else:
        log_prob = None
    return Dataset(name, x, None if centres is None else centres.numpy(), None if weights is None else weights.numpy(),
                   log_prob, _box(x) if x.shape[1] == 2 else None)


def _box(x: np.ndarray, margin: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = x.min(0), x.max(0)
    pad = margin * (hi - lo).max()
    return lo - pad, hi + pad
