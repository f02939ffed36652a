"""Reference equilibrium samples of synthetic targets by parallel-tempering MCMC.

:func:`reference_samples` runs many independent replica-exchange chains as one torch batch and
checks its own convergence; it serves the targets that have no exact sampler (LJ clusters, DW-4).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import numpy as np
import torch

from boltzflow.evaluation import integrated_autocorrelation_time, split_rhat
from boltzflow.mcmc.tempering import neighbour_swap
from boltzflow.targets import load_target
from boltzflow.targets.base import Target
from boltzflow.targets.synthetic import LennardJonesCluster

__all__ = ["reference_samples", "DEFAULTS", "convergence_diagnostics"]

#: Per-target defaults (targets not listed use ``"generic"``). ``burn_in`` and ``thin`` count
#: moves; an HMC move costs ``n_leapfrog`` gradient evaluations, a MALA or random-walk move one.
#: LJ clusters use HMC: with their stiff repulsion MALA needs steps of ~5e-4 and decorrelates
#: the T = 1 energy only after ~400 moves, HMC with 10 leapfrog steps after ~13 moves (~130
#: gradients); ``thin`` is set near that time so the samples are nearly independent.
#: Measured for 10,000 samples on 2 shared CPU cores (float64): dw4 15-50 s (ESS ~7,700),
#: lj13 40 s-4.5 min (ESS ~6,000), lj55 ~40 min (ESS ~4,500); the spread is other load on the
#: machine. Cost ~ (burn_in + ceil(n / n_chains) * thin) * n_leapfrog gradient evaluations of a
#: batch of n_chains * n_temperatures configurations.
DEFAULTS: dict[str, dict[str, Any]] = {
    "generic": dict(move="mala", n_chains=64, n_temperatures=8, t_max=10.0, burn_in=2000, thin=10),
    "dw4": dict(move="mala", n_chains=128, n_temperatures=6, t_max=5.0, burn_in=2000, thin=10),
    "lj13": dict(move="hmc", n_leapfrog=10, n_chains=128, n_temperatures=4, t_max=2.0, burn_in=300, thin=10),
    "lj55": dict(move="hmc", n_leapfrog=10, n_chains=64, n_temperatures=6, t_max=2.0, burn_in=300, thin=10),
}

_TARGET_ACCEPTANCE = {"mala": 0.574, "rwm": 0.234, "hmc": 0.65}


def _energy_grad(target: Target, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        u = target.energy(xg)
        (g,) = torch.autograd.grad(u.sum(), xg)
    return u.detach(), g.detach()


def _lattice_init(n_particles: int, spatial_dim: int, n: int, spacing: float,
                  noise: float, generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """``n`` configurations: the ``n_particles`` sites of a cubic lattice nearest its centre,
    jittered by ``noise``."""
    side = math.ceil(n_particles ** (1.0 / spatial_dim)) + 2
    grids = torch.meshgrid(*[torch.arange(side, dtype=torch.float64)] * spatial_dim, indexing="ij")
    sites = torch.stack([g.reshape(-1) for g in grids], dim=1)
    sites = sites - sites.mean(0)
    order = torch.argsort((sites**2).sum(1) + 1e-9 * torch.arange(len(sites)), stable=True)
    base = spacing * sites[order[:n_particles]]
    jitter = noise * torch.randn(n, n_particles, spatial_dim, generator=generator, dtype=torch.float64)
    return (base + jitter).reshape(n, -1).to(dtype)


def _initial_states(target: Target, n: int, generator: torch.Generator,
                    dtype: torch.dtype, init: Any) -> torch.Tensor:
    if init is not None:
        x0 = torch.as_tensor(np.asarray(init), dtype=dtype)
        if x0.ndim == 1:
            x0 = x0.expand(n, -1)
        if x0.shape != (n, target.dim):
            raise ValueError(f"init must have shape ({target.dim},) or ({n}, {target.dim}), got {tuple(x0.shape)}")
        return x0.clone()
    n_particles = getattr(target, "n_particles", None)
    spatial_dim = getattr(target, "spatial_dim", None)
    if isinstance(target, LennardJonesCluster):
        return _lattice_init(n_particles, spatial_dim, n, 1.12, 0.05, generator, dtype)
    if n_particles is not None:  # DW-4 and other soft particle systems: typical distance ~4
        return 2.0 * torch.randn(n, target.dim, generator=generator, dtype=torch.float64).to(dtype)
    return torch.randn(n, target.dim, generator=generator, dtype=torch.float64).to(dtype)


def _ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / len(a)
    cdf_b = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def convergence_diagnostics(traces: np.ndarray, *, z_threshold: float = 4.0,
                            rhat_threshold: float = 1.05, ks_alpha: float = 1e-3) -> dict[str, Any]:
    """Convergence statistics of ``T = 1`` energy traces ``(n_saves, n_chains)``.

    - ``z_halves``: the mean over chains of (first-half mean - second-half mean) of each chain,
      divided by its standard error over chains (chains are independent, so this holds whatever
      the autocorrelation); a drift or an unfinished burn-in shows up here.
    - ``z_groups``: Welch statistic of the per-chain means of chains ``[0, C/2)`` vs
      ``[C/2, C)``; chains stuck in different regions show up here.
    - ``ks_halves`` vs ``ks_critical``: two-sample KS statistic of the pooled energies of the
      two halves, with the critical value at level ``ks_alpha`` for the effective sample sizes
      (``n / tau_int``).
    - ``rhat``: split R-hat of the energy.
    Each test passes when ``|z| < z_threshold``, ``ks < ks_critical``, ``rhat < rhat_threshold``.
    """
    traces = np.asarray(traces, dtype=np.float64)
    s, c = traces.shape
    out: dict[str, Any] = {"n_saves": int(s), "n_chains": int(c)}
    half = s // 2
    first, second = traces[:half], traces[half : 2 * half]
    diff = first.mean(0) - second.mean(0)
    se = diff.std(ddof=1) / math.sqrt(c) if c > 1 else float("nan")
    out["z_halves"] = float(diff.mean() / se) if se > 0 else 0.0
    means = traces.mean(0)
    ga, gb = means[: c // 2], means[c // 2 :]
    se_g = math.sqrt(ga.var(ddof=1) / len(ga) + gb.var(ddof=1) / len(gb)) if min(len(ga), len(gb)) > 1 else float("nan")
    out["z_groups"] = float((ga.mean() - gb.mean()) / se_g) if se_g > 0 else 0.0
    # a short or constant trace counts as uncorrelated; tau is kept above 1/s
    tau = integrated_autocorrelation_time(traces) if s >= 4 else 1.0
    tau = max(tau, 1.0 / s) if math.isfinite(tau) else 1.0
    out["tau_int"] = tau
    out["ess"] = float(s * c / max(tau, 1.0))
    n_eff_half = max(out["ess"] / 2.0, 2.0)
    out["ks_halves"] = _ks_statistic(first.ravel(), second.ravel())
    out["ks_critical"] = float(math.sqrt(-0.5 * math.log(ks_alpha / 2.0)) * math.sqrt(2.0 / n_eff_half))
    # classic split R-hat of the first 2 * half saves (an odd last save is dropped); NaN when
    # the halves are too short or none of them moves
    halves = traces[: 2 * half].T.reshape(c, 2, half)
    moving = half >= 2 and halves.var(axis=2, ddof=1).mean() > 0
    out["rhat"] = float(split_rhat(traces[: 2 * half].T, rank_normalised=False)[0]) if moving else float("nan")
    q = [0.05, 0.25, 0.5, 0.75, 0.95]
    out["energy_quantiles_first_half"] = np.quantile(first, q).tolist()
    out["energy_quantiles_second_half"] = np.quantile(second, q).tolist()
    out["energy_mean"] = float(traces.mean())
    out["energy_std"] = float(traces.std())
    out["checks"] = {
        "z_halves": abs(out["z_halves"]) < z_threshold,
        "z_groups": abs(out["z_groups"]) < z_threshold,
        "ks_halves": out["ks_halves"] < out["ks_critical"],
        "rhat": bool(out["rhat"] < rhat_threshold),
    }
    return out


def _metropolis_move(
    target: Target, x: torch.Tensor, u: torch.Tensor, g: torch.Tensor, log_h: torch.Tensor,
    betas: torch.Tensor, move: str, n_leapfrog: int, project: Callable[[torch.Tensor], torch.Tensor],
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Metropolis-adjusted MALA, random-walk or HMC move of every replica ``(c, k, d)`` for
    ``energy / T_k``; returns the new states, energies, gradients and the acceptance mask."""
    c, k, d = x.shape
    dtype = x.dtype
    b = betas.view(1, k)
    h = torch.exp(log_h).view(1, k, 1)
    noise = project(torch.randn(c * k, d, generator=gen, dtype=dtype)).reshape(c, k, d)
    bb = b.unsqueeze(-1)
    if move == "hmc":
        # leapfrog step jittered by +-20 % per replica to avoid periodic trajectories
        eps = h * (0.8 + 0.4 * torch.rand(c, k, 1, generator=gen, dtype=dtype))
        p = noise
        y, gy = x, g
        p = p - 0.5 * eps * bb * gy
        for i in range(n_leapfrog):
            y = y + eps * p
            uy, gy = _energy_grad(target, y.reshape(c * k, d))
            gy = project(gy).reshape(c, k, d)
            uy = uy.reshape(c, k)
            p = p - (0.5 if i == n_leapfrog - 1 else 1.0) * eps * bb * gy
        log_alpha = -b * (uy - u) - 0.5 * ((p**2).sum(-1) - (noise**2).sum(-1))
    else:
        if move == "mala":
            y = x - h * bb * g + torch.sqrt(2.0 * h) * noise
        else:
            y = x + h * noise
        uy, gy = _energy_grad(target, y.reshape(c * k, d))
        gy = project(gy)
        uy, gy = uy.reshape(c, k), gy.reshape(c, k, d)
        log_alpha = -b * (uy - u)
        if move == "mala":
            fwd = ((y - x + h * bb * g) ** 2).sum(-1)
            bwd = ((x - y + h * bb * gy) ** 2).sum(-1)
            log_alpha = log_alpha - (bwd - fwd) / (4.0 * h.squeeze(-1))
    finite = torch.isfinite(uy) & torch.isfinite(gy).all(-1) & torch.isfinite(log_alpha)
    log_alpha = torch.where(finite, log_alpha, torch.full_like(log_alpha, -math.inf))
    accept = torch.log(torch.rand(c, k, generator=gen, dtype=dtype)) < log_alpha
    x = torch.where(accept.unsqueeze(-1), y, x)
    u = torch.where(accept, uy, u)
    g = torch.where(accept.unsqueeze(-1), gy, g)
    return x, u, g, accept


def reference_samples(
    target: Target | str,
    n_samples: int,
    *,
    seed: int = 0,
    n_chains: int | None = None,
    n_temperatures: int | None = None,
    t_max: float | None = None,
    burn_in: int | None = None,
    thin: int | None = None,
    move: str | None = None,
    n_leapfrog: int | None = None,
    target_acceptance: float | None = None,
    init: Any = None,
    com_free: bool | None = None,
    dtype: torch.dtype = torch.float64,
    z_threshold: float = 4.0,
    rhat_threshold: float = 1.05,
    min_swap_acceptance: float = 0.01,
    strict: bool = False,
    log: Callable[[str], Any] | None = print,
    log_every: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Equilibrium samples of ``target`` (a :class:`Target` or a registered name) by
    parallel-tempering MCMC.

    Returns ``(samples, diagnostics)``: ``samples`` is a float64 array ``(n_samples, dim)`` of
    ``T = 1`` states, ordered by save time and then chain (row ``r`` is chain
    ``diagnostics["chain"][r]`` at production step ``diagnostics["step"][r]``); for particle
    targets every row has zero centre of mass. ``None`` parameters take the values of
    :data:`DEFAULTS` for the target's name (else ``DEFAULTS["generic"]``):

    - ``n_chains`` independent PT chains, each with ``n_temperatures`` replicas on a
      geometric ladder from 1 to ``t_max``;
    - ``burn_in`` steps (step-size adaptation, then discarded), then
      ``ceil(n_samples / n_chains) * thin`` production steps keeping every ``thin``-th;
    - ``move``: ``"mala"``, ``"rwm"`` or ``"hmc"`` (``n_leapfrog`` leapfrog steps of size
      ``h`` jittered by +-20 %, unit masses); ``target_acceptance`` defaults to
      0.574 / 0.234 / 0.65;
    - ``init``: starting states ``(dim,)`` or ``(n_chains * n_temperatures, dim)``; by default
      a jittered cubic lattice for LJ clusters, ``N(0, 4 I)`` for other particle systems and
      ``N(0, I)`` otherwise;
    - ``com_free``: project moves onto the centre-of-mass-free subspace (default:
      ``target.com_free`` if set, else False).

    ``diagnostics`` holds the ladder, step sizes, per-temperature MCMC acceptance, neighbour
    swap acceptance, the T = 1 energies of the samples, the convergence statistics of
    :func:`convergence_diagnostics`, ``checks`` (each True when passed; the acceptance checks
    need every MCMC rate in (0.05, 0.95) and every swap rate above ``min_swap_acceptance``),
    ``converged`` (all checks passed) and ``time_s``. With ``strict=True`` a failed check
    raises ``RuntimeError``. Deterministic given ``seed`` (and the torch thread count).

    Algorithm
    ---------
    :func:`reference_samples` runs many independent parallel-tempering (replica-exchange) MCMC
    chains as one torch batch. Each chain carries ``n_temperatures`` replicas on a geometric
    ladder ``1 = T_0 < T_1 < ... < T_{K-1} = t_max``; every step moves every replica with one
    Metropolis-adjusted proposal for ``energy / T_k`` - Langevin (MALA), random walk, or
    Hamiltonian Monte Carlo with ``n_leapfrog`` leapfrog steps (HMC; MALA is its one-step case) -
    then attempts swaps between neighbouring temperatures (even pairs on even steps, odd pairs on
    odd steps), accepted with probability ``min(1, exp((1/T_k - 1/T_{k+1}) (U_k - U_{k+1})))``.

    The step size of each temperature is adapted during burn-in (Robbins-Monro on its log, toward
    the target acceptance: 0.574 for MALA, 0.234 for random walk, 0.65 for HMC) and then frozen,
    so the production run is an exact, time-homogeneous Markov chain. For translation-invariant particle
    targets (``target.com_free``: LJ-13, LJ-55, DW-4) the chains start at zero centre of mass
    and the noise and drift are projected onto the centre-of-mass-free subspace, so the chains
    sample the normalisable density on that subspace.

    Only the ``T = 1`` replicas are kept, after burn-in, every ``thin`` steps. The convergence
    check compares the ``T = 1`` energies of the first and second half of the production run
    (paired over chains), of two disjoint groups of chains, and their distributions (a KS
    statistic against a critical value from the effective sample size); together with the split
    R-hat of the energy, the MCMC and swap acceptance rates, the verdict is
    ``diagnostics["converged"]`` (``strict=True`` raises instead).
    """
    if isinstance(target, str):

        target = load_target(target)
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    defaults = DEFAULTS.get(target.name, DEFAULTS["generic"])
    move = move if move is not None else defaults["move"]
    if move not in _TARGET_ACCEPTANCE:
        raise ValueError(f"move must be one of {sorted(_TARGET_ACCEPTANCE)}, got {move!r}")
    n_leapfrog = int(n_leapfrog if n_leapfrog is not None else defaults.get("n_leapfrog", 10))
    if n_leapfrog < 1:
        raise ValueError(f"n_leapfrog must be >= 1, got {n_leapfrog}")
    n_chains = int(n_chains if n_chains is not None else defaults["n_chains"])
    n_temps = int(n_temperatures if n_temperatures is not None else defaults["n_temperatures"])
    t_max = float(t_max if t_max is not None else defaults["t_max"])
    burn_in = int(burn_in if burn_in is not None else defaults["burn_in"])
    thin = int(thin if thin is not None else defaults["thin"])
    acc_target = float(target_acceptance if target_acceptance is not None else _TARGET_ACCEPTANCE[move])
    if n_chains < 2 or n_temps < 1 or burn_in < 0 or thin < 1:
        raise ValueError("need n_chains >= 2, n_temperatures >= 1, burn_in >= 0, thin >= 1")
    if n_temps > 1 and not t_max > 1.0:
        raise ValueError(f"t_max must exceed 1 with several temperatures, got {t_max}")
    if com_free is None:
        com_free = bool(getattr(target, "com_free", False))
    if com_free and not hasattr(target, "remove_com"):
        raise ValueError(f"{target.name}: com_free needs a target with remove_com()")
    say = log if log is not None else (lambda _msg: None)

    gen = torch.Generator().manual_seed(int(seed))
    c, k, d = n_chains, n_temps, target.dim
    temps = (torch.logspace(0.0, math.log10(t_max), k, dtype=dtype) if k > 1
             else torch.ones(1, dtype=dtype))
    betas = 1.0 / temps

    def project(v: torch.Tensor) -> torch.Tensor:
        return target.remove_com(v) if com_free else v

    x = _initial_states(target, c * k, gen, dtype, init)
    x = project(x)
    u, g = _energy_grad(target, x)
    g = project(g)
    x, u, g = x.reshape(c, k, d), u.reshape(c, k), g.reshape(c, k, d)
    if not torch.isfinite(u).all():
        raise ValueError(f"{target.name}: non-finite energies at the initial states")

    # initial step sizes: a fraction of the temperature (the typical scale grows like sqrt(T))
    log_h = {"mala": torch.log(1e-3 * temps), "rwm": torch.log(0.05 * torch.sqrt(temps)),
             "hmc": torch.log(0.02 * torch.sqrt(temps))}[move]
    n_saves = math.ceil(n_samples / c)
    n_prod = n_saves * thin
    total = burn_in + n_prod
    if log_every is None:
        log_every = max(1, total // 10)
    acc_sum = torch.zeros(k, dtype=dtype)
    swap_acc_sum = torch.zeros(max(k - 1, 1), dtype=dtype)
    swap_tries = torch.zeros(max(k - 1, 1), dtype=dtype)
    saved_x = torch.empty(n_saves, c, d, dtype=dtype)
    saved_u = torch.empty(n_saves, c, dtype=dtype)
    t_start = time.perf_counter()
    say(f"[reference] {target.name}: {c} chains x {k} temperatures (T_max {t_max:g}), {move}, "
        f"burn-in {burn_in}, production {n_prod} (thin {thin}) -> {n_samples} samples")

    for step in range(total):
        x, u, g, accept = _metropolis_move(target, x, u, g, log_h, betas, move, n_leapfrog, project, gen)
        acc_rate = accept.to(dtype).mean(0)

        if step < burn_in:
            gain = 1.0 / (1.0 + step / 20.0) ** 0.6
            log_h = log_h + gain * (acc_rate - acc_target)
        else:
            acc_sum += acc_rate

        if k > 1:  # deterministic even/odd neighbour swaps
            lo = torch.arange(step % 2, k - 1, 2)
            if len(lo) > 0:
                swap, perm = neighbour_swap(u, betas, lo, gen, log_uniform=True)
                x = torch.gather(x, 1, perm.unsqueeze(-1).expand(c, k, d))
                g = torch.gather(g, 1, perm.unsqueeze(-1).expand(c, k, d))
                u = torch.gather(u, 1, perm)
                if step >= burn_in:
                    swap_acc_sum[lo] += swap.to(dtype).mean(0)
                    swap_tries[lo] += 1

        if step >= burn_in and (step - burn_in + 1) % thin == 0:
            s = (step - burn_in + 1) // thin - 1
            saved_x[s] = x[:, 0]
            saved_u[s] = u[:, 0]
        if log_every and (step + 1) % log_every == 0:
            phase = "burn-in" if step < burn_in else "production"
            say(f"[reference] {target.name}: step {step + 1}/{total} ({phase}), "
                f"T=1 energy mean {u[:, 0].mean().item():.3f}, "
                f"acceptance {[round(a, 2) for a in acc_rate.tolist()]}, "
                f"{time.perf_counter() - t_start:.1f} s")

    elapsed = time.perf_counter() - t_start
    traces = saved_u.numpy().astype(np.float64)
    stats = convergence_diagnostics(traces, z_threshold=z_threshold, rhat_threshold=rhat_threshold)
    acc = (acc_sum / max(n_prod, 1)).tolist()
    swap_acc = (swap_acc_sum / swap_tries.clamp_min(1)).tolist() if k > 1 else []
    checks = dict(stats.pop("checks"))
    checks["mcmc_acceptance"] = all(0.05 < a < 0.95 for a in acc)
    checks["swap_acceptance"] = all(a > min_swap_acceptance for a in swap_acc)
    checks["finite"] = bool(np.isfinite(traces).all())
    converged = all(checks.values())

    samples = saved_x.reshape(n_saves * c, d)[:n_samples]
    if com_free:
        samples = target.remove_com(samples)
    samples_np = samples.numpy().astype(np.float64)
    chain = np.tile(np.arange(c), n_saves)[:n_samples]
    prod_step = np.repeat(np.arange(1, n_saves + 1) * thin, c)[:n_samples]
    diagnostics: dict[str, Any] = {
        "target": target.name,
        "seed": int(seed),
        "move": move,
        "n_chains": c,
        "temperatures": temps.tolist(),
        "burn_in": burn_in,
        "thin": thin,
        "n_production_steps": n_prod,
        "step_sizes": torch.exp(log_h).tolist(),
        "acceptance": acc,
        "swap_acceptance": swap_acc,
        "energies": traces.reshape(-1)[:n_samples].copy(),
        "chain": chain,
        "step": prod_step,
        **stats,
        "checks": checks,
        "converged": converged,
        "time_s": elapsed,
    }
    say(f"[reference] {target.name}: done in {elapsed:.1f} s; energy {stats['energy_mean']:.3f} "
        f"+- {stats['energy_std']:.3f}, acceptance {[round(a, 3) for a in acc]}, "
        f"swaps {[round(a, 3) for a in swap_acc]}, z_halves {stats['z_halves']:.2f}, "
        f"z_groups {stats['z_groups']:.2f}, KS {stats['ks_halves']:.3f} (crit {stats['ks_critical']:.3f}), "
        f"R-hat {stats['rhat']:.3f}, converged: {converged}")
    if strict and not converged:
        failed = [name for name, ok in checks.items() if not ok]
        raise RuntimeError(f"{target.name}: reference sampling failed the checks {failed}")
    return samples_np, diagnostics
