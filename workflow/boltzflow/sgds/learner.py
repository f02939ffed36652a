"""The SGDS Learner: a diffusion sampler on [0, 1] trained by trajectory balance.

Kim et al., "On scalable and efficient training of diffusion samplers" (NeurIPS 2025, arXiv
2505.19552), after PIS (Zhang & Chen 2022) and the GFlowNet view of diffusion samplers
(Sendera et al. 2024)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from boltzflow.evaluation import energy_wasserstein, wasserstein2
from boltzflow.io import ArtifactError, atomic_path
from boltzflow.sgds.egnn import EGNNDrift, remove_mean
from boltzflow.sgds.settings import TIME_GRIDS

__all__ = ["DriftMLP", "DiffusionSampler", "Trajectories", "time_grid", "trajectory_balance_loss",
           "pis_loss", "path_mle_loss", "log_weights", "elbo_eubo", "elbo_monitor", "evaluate_sampler", "forward_log_weights",
           "backward_log_weights", "sampler_config", "build_drift", "build_sampler", "save_sampler", "load_sampler"]

Energy = Callable[[torch.Tensor], torch.Tensor]


class DriftMLP(nn.Module):
    """PIS-style drift ``u(x, t)``: ``x`` and sinusoidal time features through an MLP of ``depth``
    hidden layers (SiLU) whose last layer starts at zero, so a new sampler is plain Brownian motion.

    >>> import torch
    >>> drift = DriftMLP(dim=2, hidden=32)
    >>> drift(torch.zeros(5, 2), torch.tensor(0.5)).abs().max().item()  # zero drift at the start
    0.0
    """

    def __init__(self, dim: int, hidden: int = 256, depth: int = 2, harmonics: int = 64):
        super().__init__()
        if min(dim, hidden, depth, harmonics) < 1:
            raise ValueError(f"dim, hidden, depth and harmonics must be >= 1, got {dim}, {hidden}, {depth}, {harmonics}")
        self.dim = dim
        self.register_buffer("frequencies", torch.linspace(0.1, 100.0, harmonics))
        layers: list[nn.Module] = []
        width = dim + 2 * harmonics
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        angles = t.reshape(-1, 1).to(x.dtype) * self.frequencies.to(x.dtype)
        features = torch.cat([x, torch.sin(angles).expand(len(x), -1), torch.cos(angles).expand(len(x), -1)], dim=1)
        return self.out(self.body(features))


@dataclass
class Trajectories:
    """States ``x`` ``(B, T + 1, d)`` (``x[:, 0] = 0``) and per-step ``log P_F`` and ``log P_B``
    ``(B, T)`` in float64 (step ``k`` is the transition between ``x_k`` and ``x_{k+1}``)."""

    x: torch.Tensor
    log_pf: torch.Tensor
    log_pb: torch.Tensor

    @property
    def final(self) -> torch.Tensor:
        return self.x[:, -1]


def _gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor | float,
                          dof: int | None = None) -> torch.Tensor:
    """``log N(x; mean, var I)`` summed over the last axis, in float64; with ``dof`` the isotropic
    Gaussian on a ``dof``-dimensional linear subspace that holds ``x - mean``."""
    x64, mean64 = x.to(torch.float64), mean.to(torch.float64)
    var64 = torch.as_tensor(var, dtype=torch.float64, device=x.device)
    d = x.shape[-1] if dof is None else dof
    return -0.5 * ((x64 - mean64).square().sum(-1) / var64 + d * torch.log(2.0 * math.pi * var64))


class DiffusionSampler(nn.Module):
    """Forward policy (a drift network), Brownian-bridge backward policy and a learned ``log Z``.

    With ``T`` steps of ``dt = 1 / T`` and times ``t_k = k dt``:

    - the **forward policy** starts at ``x_0 = 0`` and takes Euler-Maruyama steps
      ``x_{k+1} = x_k + dt u_theta(x_k, t_k) + sigma sqrt(dt) xi``, a Gaussian kernel
      ``P_F(x_{k+1} | x_k) = N(x_k + dt u, sigma^2 dt I)`` with a learned drift and a fixed variance;
    - the **backward policy** is the Brownian bridge to 0,
      ``P_B(x_k | x_{k+1}) = N((t_k / t_{k+1}) x_{k+1}, (t_k / t_{k+1}) sigma^2 dt I)`` (``x_0 = 0``
      surely), the exact time reversal of the drift-free walk;
    - a trajectory's **log-weight** is ``log w = log R(x_T) + sum log P_B - sum log P_F`` with
      ``log R = -E``; the **trajectory-balance** loss is ``(log Z_theta - log w)^2`` with a learned
      scalar ``log Z_theta``; ``E_{P_F}[log w] <= log Z <= E_{P_B, x_T ~ p}[log w]`` (ELBO and EUBO).

    Every log-density here is accumulated in float64 whatever the network's dtype. Energy calls are
    counted by the caller (a :class:`boltzflow.mcmc.CountingLogProb` or the trainer's counter).


    >>> import torch
    >>> sampler = DiffusionSampler(DriftMLP(dim=2, hidden=32), dim=2, n_steps=10)
    >>> sampler.sample(4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 2])
    """

    def __init__(self, drift: nn.Module, dim: int, sigma: float = 1.0, n_steps: int = 100, log_z: float = 0.0,
                 particles: tuple[int, int] | None = None):
        super().__init__()
        if not (sigma > 0 and n_steps >= 1 and dim >= 1):
            raise ValueError(f"need sigma > 0, n_steps >= 1 and dim >= 1, got {sigma}, {n_steps}, {dim}")
        if particles is not None and (len(particles) != 2 or particles[0] * particles[1] != dim):
            raise ValueError(f"particles (n, s) must have n * s = dim = {dim}, got {particles}")
        self.drift = drift
        self.dim = int(dim)
        # particle systems: the walk stays on the centre-of-mass-free subspace (noise projected,
        # densities on dim - s dimensions); the drift network must keep it there too
        self.particles = None if particles is None else (int(particles[0]), int(particles[1]))
        self.dof = self.dim if particles is None else self.dim - self.particles[1]
        self.sigma = float(sigma)
        self.n_steps = int(n_steps)
        self.log_z = nn.Parameter(torch.tensor(float(log_z), dtype=torch.float64))

    @property
    def dt(self) -> float:
        return 1.0 / self.n_steps

    def _dtype(self) -> torch.dtype:
        return next(self.drift.parameters()).dtype

    def _device(self) -> torch.device:
        return next(self.drift.parameters()).device

    def _noise(self, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return noise if self.particles is None else self.project(noise)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the walk's space: unchanged, or with the centre of mass removed for particles."""

        return x if self.particles is None else remove_mean(x, *self.particles)

    def _forward_mean(self, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
        return x + h * self.drift(x, torch.full((1,), t, dtype=x.dtype, device=x.device))

    def _schedule(self, times: torch.Tensor | None) -> list[tuple[float, float, float]]:
        """Per step ``k``: ``(t_k, h_k = t_{k+1} - t_k, t_k / t_{k+1})`` on the sampler's uniform
        grid of ``n_steps`` steps (``times`` None) or on a grid from :func:`time_grid`, which may
        have another number of steps (a finer grid at evaluation)."""
        if times is None:
            return [(k * self.dt, self.dt, k / (k + 1)) for k in range(self.n_steps)]
        grid = [float(v) for v in times]
        if len(grid) < 2 or grid[0] != 0.0 or grid[-1] != 1.0 or any(b <= a for a, b in zip(grid, grid[1:])):
            raise ValueError(f"times must increase from 0 to 1, got {grid[:3]} ... {grid[-2:]}")
        return [(a, b - a, a / b) for a, b in zip(grid, grid[1:])]

    def sample_trajectories(self, n: int, generator: torch.Generator | None = None,
                            exploration_std: float = 0.0, reparameterise: bool = False,
                            times: torch.Tensor | None = None) -> Trajectories:
        """``n`` on-policy trajectories (graph kept for training). ``exploration_std`` adds to the
        noise std of the sampling kernel only, not to ``log P_F`` (off-policy exploration).
        ``reparameterise``: the states stay functions of the drift (``x_{k+1} = mean + noise`` with
        the graph through ``mean``), for the path-wise gradient of PIS; trajectory balance
        detaches them. ``times``: the time grid (:func:`time_grid`; default uniform)."""
        dtype, device = self._dtype(), self._device()
        x = torch.zeros(n, self.dim, dtype=dtype, device=device)
        states, log_pf, log_pb = [x], [], []
        for k, (t, h, ratio) in enumerate(self._schedule(times)):
            var = self.sigma**2 * h
            mean = self._forward_mean(x, t, h)
            noise = self._noise(x, generator)
            x_next = (mean if reparameterise else mean.detach()) + (math.sqrt(var) + exploration_std) * noise
            log_pf.append(_gaussian_log_density(x_next, mean, var, self.dof))
            log_pb.append(self._bridge_log_density(x, x_next, k, ratio, h))
            states.append(x_next)
            x = x_next
        return Trajectories(torch.stack(states, 1), torch.stack(log_pf, 1), torch.stack(log_pb, 1))

    def _bridge_log_density(self, x: torch.Tensor, x_next: torch.Tensor, k: int, ratio: float,
                            h: float) -> torch.Tensor:
        """``log P_B(x_k = x | x_{k+1} = x_next) = log N(x; r x_next, r sigma^2 h I)`` with
        ``r = t_k / t_{k+1}``, ``h = t_{k+1} - t_k``; 0 for ``k = 0`` (``x_0 = 0`` surely)."""
        if k == 0:
            return torch.zeros(len(x), dtype=torch.float64, device=x.device)
        return _gaussian_log_density(x, ratio * x_next, ratio * self.sigma**2 * h, self.dof)

    def backward_trajectories(self, x_final: torch.Tensor, generator: torch.Generator | None = None,
                              times: torch.Tensor | None = None) -> Trajectories:
        """Trajectories drawn backwards from ``x_final`` ``(B, d)`` by the Brownian bridge, with
        ``log P_F`` of every step under the current drift (graph kept for training). Particle
        configurations are moved to zero centre of mass first (their energies do not change).
        ``times``: the time grid (:func:`time_grid`; default uniform)."""
        if x_final.ndim != 2 or x_final.shape[1] != self.dim:
            raise ValueError(f"x_final must be (B, {self.dim}), got {tuple(x_final.shape)}")
        dtype, device = self._dtype(), self._device()
        x_next = self.project(x_final.to(dtype=dtype, device=device))
        states, log_pf, log_pb = [x_next], [], []
        schedule = self._schedule(times)
        for k in range(len(schedule) - 1, -1, -1):
            t, h, ratio = schedule[k]
            var = self.sigma**2 * h
            if k == 0:
                x = torch.zeros_like(x_next)
            else:
                x = ratio * x_next + math.sqrt(ratio * var) * self._noise(x_next, generator)
            log_pb.append(self._bridge_log_density(x, x_next, k, ratio, h))
            log_pf.append(_gaussian_log_density(x_next, self._forward_mean(x, t, h), var, self.dof))
            states.append(x)
            x_next = x
        flip = lambda items: torch.stack(items[::-1], 1)  # noqa: E731
        return Trajectories(flip(states), flip(log_pf), flip(log_pb))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, times: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` samples ``x_T`` of the forward policy (on the time grid ``times``; default uniform)."""
        return self.sample_trajectories(n, generator, times=times).final.detach()


def time_grid(n_steps: int, kind: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """Times ``0 = t_0 < ... < t_T = 1`` (float64, ``T + 1`` values). ``uniform``: ``t_k = k / T``.
    ``random`` (the randomised time steps of Berner et al. 2025, which the SGDS paper uses for
    LJ-55 and the peptides; this form is ours): the mean of the uniform grid and the order
    statistics of ``T - 1`` uniform draws, so every step is at least ``1 / (2 T)`` long and a
    network trained on such grids is evaluated on the uniform one."""
    if n_steps < 1 or kind not in TIME_GRIDS:
        raise ValueError(f"time grid: need n_steps >= 1 and kind in {TIME_GRIDS}, got {n_steps}, {kind!r}")
    uniform = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    if kind == "uniform":
        return uniform
    inner = torch.rand(n_steps - 1, generator=generator, dtype=torch.float64).sort().values
    drawn = torch.cat([torch.zeros(1, dtype=torch.float64), inner, torch.ones(1, dtype=torch.float64)])
    grid = 0.5 * (uniform + drawn)
    grid[0], grid[-1] = 0.0, 1.0
    return grid


def log_weights(traj: Trajectories, log_reward: torch.Tensor) -> torch.Tensor:
    """``log R(x_T) + sum log P_B - sum log P_F`` per trajectory, float64."""
    return log_reward.to(torch.float64) + traj.log_pb.sum(1) - traj.log_pf.sum(1)


def trajectory_balance_loss(sampler: DiffusionSampler, traj: Trajectories, log_reward: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``(log Z_theta + sum log P_F - sum log P_B - log R)^2`` (float64)."""
    residual = sampler.log_z - log_weights(traj, log_reward)
    return residual.square().mean()


def path_mle_loss(traj: Trajectories) -> torch.Tensor:
    """Forward-path maximum likelihood: ``-mean sum log P_F`` of trajectories drawn backwards from
    target samples, i.e. the KL from the backward path measure of the samples to the forward one
    up to a constant (no energy, no ``log Z``)."""
    return -traj.log_pf.sum(1).mean()


def pis_loss(sampler: DiffusionSampler, traj: Trajectories, log_reward: torch.Tensor) -> torch.Tensor:
    """The path integral sampler's objective (Zhang & Chen 2022): the reverse KL of the path
    measures, ``E[log P_F - log P_B - log R] = log Z - ELBO``, estimated on reparameterised
    trajectories (``reparameterise=True``; ``log_reward`` differentiable in ``x_T``), plus
    ``(log Z_theta - log w)^2`` with ``log w`` detached, which only fits ``log Z_theta``."""
    log_w = log_weights(traj, log_reward)
    return -log_w.mean() + (sampler.log_z - log_w.detach()).square().mean()


@torch.no_grad()
def forward_log_weights(sampler: DiffusionSampler, energy: Energy, n: int, generator: torch.Generator | None = None,
                        batch: int = 1000, times: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` forward samples ``x_T`` (float64) and their trajectories' log-weights, in batches
    (on the time grid ``times``; default the sampler's uniform grid)."""
    samples, log_w = [], []
    for start in range(0, n, batch):
        traj = sampler.sample_trajectories(min(batch, n - start), generator, times=times)
        samples.append(traj.final.to(torch.float64))
        log_w.append(log_weights(traj, -energy(samples[-1])))
    return torch.cat(samples), torch.cat(log_w)


@torch.no_grad()
def backward_log_weights(sampler: DiffusionSampler, energy: Energy, reference: torch.Tensor,
                         generator: torch.Generator | None = None, batch: int = 1000,
                         times: torch.Tensor | None = None) -> torch.Tensor:
    """Log-weights of Brownian-bridge trajectories drawn backwards from the ``reference`` points."""
    values = []
    for rows in reference.split(batch):
        traj = sampler.backward_trajectories(rows, generator, times)
        values.append(log_weights(traj, -energy(rows.to(torch.float64))))
    return torch.cat(values)


def _mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std() / math.sqrt(len(values))) if len(values) > 1 else float("nan")


@torch.no_grad()
def elbo_eubo(sampler: DiffusionSampler, energy: Energy, n: int, reference: torch.Tensor | None = None,
              generator: torch.Generator | None = None, batch: int = 1000,
              times: torch.Tensor | None = None) -> dict[str, float]:
    """ELBO from ``n`` forward trajectories and, with ``reference`` samples of the target, EUBO
    from backward trajectories started at them; both with their standard errors, and the gap
    (on the time grid ``times``; default the sampler's uniform grid)."""
    _, forward = forward_log_weights(sampler, energy, n, generator, batch, times)
    out = dict(zip(("elbo", "elbo_se"), _mean_and_se(forward)))
    if reference is not None:
        backward = backward_log_weights(sampler, energy, reference, generator, batch, times)
        out.update(zip(("eubo", "eubo_se"), _mean_and_se(backward)))
        out["gap"] = out["eubo"] - out["elbo"]
    return out


def elbo_monitor(energy: Energy, n: int, reference: torch.Tensor | None, seed: int,
                 times: torch.Tensor | None = None,
                 device: torch.device | str = "cpu") -> Callable[[DiffusionSampler, int], dict[str, float]]:
    """A history monitor for :func:`~boltzflow.sgds.train.train_sgds`: ``monitor(sampler, iteration)``
    gives :func:`elbo_eubo` of ``n`` trajectories. Each call draws from a generator seeded by
    ``(seed, iteration)``, not from one stream over the run, so a run that resumes from a
    checkpoint logs the same values as one that was never interrupted."""

    def monitor(sampler: DiffusionSampler, iteration: int) -> dict[str, float]:
        state = np.random.SeedSequence([int(seed), int(iteration)]).generate_state(1, dtype=np.uint32)[0]
        generator = torch.Generator(device=device).manual_seed(int(state))
        return elbo_eubo(sampler, energy, n, reference, generator=generator, times=times)

    return monitor


@torch.no_grad()
def evaluate_sampler(sampler: DiffusionSampler, energy: Energy, n: int, *, reference: torch.Tensor | None = None,
                     log_z: float | None = None, generator: torch.Generator | None = None,
                     w2_points: int = 2000, times: torch.Tensor | None = None) -> dict[str, float]:
    """The SGDS paper's metrics of a trained Learner from ``n`` forward trajectories: ELBO, the
    importance-sampling estimate ``log Z_IS`` (log-mean-exp of the log-weights) and the learned
    ``log Z_theta``; with ``reference`` samples EUBO, the gap, W2 of the coordinates and W2 of the
    energies (``w2_points`` a side); with the true ``log_z`` the errors of both estimates.
    ``times``: the time grid of all trajectories (default the sampler's uniform grid)."""

    x, lw = forward_log_weights(sampler, energy, n, generator, times=times)
    metrics = dict(zip(("elbo", "elbo_se"), _mean_and_se(lw)))
    metrics["log_z_is"] = float(torch.logsumexp(lw, 0) - math.log(len(lw)))
    metrics["log_z_learned"] = float(sampler.log_z.detach())
    if log_z is not None:
        metrics["log_z_is_error"] = abs(metrics["log_z_is"] - log_z)
        metrics["log_z_learned_error"] = abs(metrics["log_z_learned"] - log_z)
    if reference is not None:
        ref = reference.to(torch.float64)
        metrics.update(zip(("eubo", "eubo_se"), _mean_and_se(backward_log_weights(sampler, energy, ref, generator,
                                                                                  times=times))))
        metrics["gap"] = metrics["eubo"] - metrics["elbo"]
        metrics["w2"] = wasserstein2(x.numpy(), ref.numpy(), max_points=w2_points)
        u = energy(x)
        metrics["energy_w2"] = energy_wasserstein(u[torch.isfinite(u)].numpy(), energy(ref).numpy(), p=2)
    return metrics


def sampler_config(sampler: DiffusionSampler) -> dict:
    """The JSON-able architecture of a sampler (for :func:`build_sampler`): a :class:`DriftMLP` or
    an :class:`~boltzflow.sgds.egnn.EGNNDrift` drift."""

    drift = sampler.drift
    config = {"dim": sampler.dim, "sigma": sampler.sigma, "n_steps": sampler.n_steps,
              "particles": list(sampler.particles) if sampler.particles else None}
    if isinstance(drift, DriftMLP):
        return {**config, "network": "mlp", "hidden": drift.out.in_features,
                "depth": sum(isinstance(m, nn.Linear) for m in drift.body), "harmonics": len(drift.frequencies)}
    if isinstance(drift, EGNNDrift):
        return {**config, "network": "egnn", "hidden": drift.hidden, "depth": drift.layers_count,
                "harmonics": len(drift.frequencies),
                "node_types": list(drift.node_types) if drift.node_types is not None else None}
    raise TypeError(f"only DriftMLP and EGNNDrift drifts can be saved, got {type(drift).__name__}")


def build_drift(network: str, dim: int, hidden: int, depth: int, harmonics: int,
                particles: tuple[int, int] | None = None, node_types: tuple[int, ...] | None = None) -> nn.Module:
    """A fresh drift network: ``mlp`` (:class:`DriftMLP`) or ``egnn`` (needs ``particles``;
    ``node_types`` labels the particles of a molecule)."""

    if network == "mlp":
        return DriftMLP(dim, hidden=hidden, depth=depth, harmonics=harmonics)
    if network == "egnn":
        if particles is None:
            raise ValueError("the egnn network needs a particle target (n_particles, spatial_dim)")
        return EGNNDrift(particles[0], particles[1], hidden=hidden, layers=depth, harmonics=harmonics,
                         node_types=node_types)
    raise ValueError(f"network must be mlp or egnn, got {network!r}")


def build_sampler(config: dict) -> DiffusionSampler:
    particles = tuple(int(v) for v in config["particles"]) if config.get("particles") else None
    node_types = tuple(int(v) for v in config["node_types"]) if config.get("node_types") else None
    drift = build_drift(config.get("network", "mlp"), int(config["dim"]), int(config["hidden"]), int(config["depth"]),
                        int(config["harmonics"]), particles, node_types)
    return DiffusionSampler(drift, int(config["dim"]), float(config["sigma"]), int(config["n_steps"]),
                            particles=particles)


def save_sampler(path, sampler: DiffusionSampler, extra: dict | None = None) -> None:
    """Write the sampler as plain tensors plus its architecture (atomically)."""

    with atomic_path(path) as tmp:
        torch.save({"config": sampler_config(sampler), "state": sampler.state_dict(), **(extra or {})}, tmp)


def load_sampler(path) -> tuple[DiffusionSampler, dict]:
    """``(sampler, rest_of_payload)`` from :func:`save_sampler` (``weights_only=True``); a file
    that is not such a checkpoint raises ``ArtifactError`` naming it."""

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ArtifactError(f"{path}: not a readable sampler checkpoint ({err})") from err
    if not isinstance(payload, dict) or not {"config", "state"} <= set(payload):
        raise ArtifactError(f"{path}: a sampler checkpoint needs entries config and state")
    try:
        sampler = build_sampler(payload["config"])
        sampler.load_state_dict(payload["state"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:
        raise ArtifactError(f"{path}: the saved weights do not fit the saved architecture ({err})") from err
    sampler.eval()
    return sampler, {k: v for k, v in payload.items() if k not in ("config", "state")}
