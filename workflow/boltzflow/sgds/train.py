"""SGDS training (Algorithm 1 of Kim et al. 2025) and its baselines, with every energy call counted."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from boltzflow.io import atomic_path, load_resume_state
from boltzflow.mcmc import MALA, annealed_importance_sampling, init_state
from boltzflow.md import BatchedLangevin
from boltzflow.sgds.buffer import RankedReplayBuffer
from boltzflow.sgds.learner import (
    DiffusionSampler,
    build_drift,
    path_mle_loss,
    pis_loss,
    time_grid,
    trajectory_balance_loss,
)
from boltzflow.sgds.rnd import RandomNetworkDistillation
from boltzflow.sgds.settings import SGDSSettings
from boltzflow.training import guarded_step
from boltzflow.units import kT_kJ_per_mol

__all__ = ["evaluation_grid", "MDSystem", "EnergyCounter", "run_searcher", "local_search",
           "reinitialise", "train_sgds"]

CHECKPOINT_NAME = "sgds_state.pt"


def evaluation_grid(settings: SGDSSettings) -> torch.Tensor | None:
    """The uniform time grid of ``settings.eval_steps`` steps for evaluation (None: the sampler's own)."""
    return None if settings.eval_steps is None else time_grid(settings.eval_steps)


@dataclass(frozen=True)
class MDSystem:
    """What the ``md`` Searcher needs of a molecule: atom masses (amu), the temperature (K) at
    which the target's reduced energy ``u = E / kT`` is defined, and the start configuration
    (flattened, nm; every chain starts there)."""

    masses: np.ndarray
    temperature: float
    start: np.ndarray


class EnergyCounter:
    """Wraps an energy ``(B, d) -> (B,)`` and counts the rows it evaluates, per phase."""

    def __init__(self, energy: Callable[[torch.Tensor], torch.Tensor]):
        self.energy = energy
        self.calls: dict[str, int] = {"searcher": 0, "learner": 0}

    def __call__(self, x: torch.Tensor, phase: str) -> torch.Tensor:
        self.calls[phase] += int(x.shape[0])
        return self.energy(x)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def run_searcher(counter: EnergyCounter, dim: int, settings: SGDSSettings, rnd: RandomNetworkDistillation | None,
                 generator: torch.Generator, round_index: int = 0,
                 md: MDSystem | None = None) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """The Searcher on ``E - alpha * RND`` (or on ``E`` when ``rnd`` is None).

    Returns the points for the buffer, their true log-rewards ``-E`` (float64), the final step
    size and an estimate of ``log Z`` of the searched density. ``mala``: the accepted proposals
    after ``searcher_burn_in`` steps, and the log-mean-exp of their log-rewards (a rough guess, as
    in the authors' code). ``ais``: the final states of ``searcher_chains`` annealing runs of
    ``searcher_steps`` steps, and the AIS estimate of ``log Z``. ``md`` (needs ``md``): BAOAB
    Langevin dynamics of ``searcher_chains`` copies of the molecule from ``md.start`` at this
    round's temperature, every ``searcher_keep_every``-th state after ``searcher_burn_in`` steps,
    and the MALA-style guess of ``log Z``."""
    alpha = settings.rnd_alpha if rnd is not None else 0.0

    def bonus(x: torch.Tensor) -> torch.Tensor:
        return alpha * rnd.novelty(x).to(x.dtype) if alpha else torch.zeros(len(x), dtype=x.dtype)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -counter(x, "searcher").to(x.dtype) + bonus(x)

    if settings.searcher == "md":
        if md is None:
            raise ValueError("the md searcher needs a molecule (masses, temperature, start configuration)")
        x, log_r = _md_search(counter, dim, settings, bonus, generator, round_index, md)
        return x, log_r, settings.searcher_timestep_fs, float(torch.logsumexp(log_r, 0) - math.log(len(log_r)))
    # float64 chains: the buffer keeps their log-rewards
    x0 = settings.searcher_prior_std * torch.randn(settings.searcher_chains, dim, generator=generator, dtype=torch.float64)
    if settings.searcher == "ais":
        result = annealed_importance_sampling(log_prob, x0, settings.searcher_prior_std, settings.searcher_steps,
                                              settings.searcher_step_size, generator, settings.target_acceptance,
                                              settings.searcher_adapt_factor)
        keep = torch.isfinite(result.log_target)
        x = result.x[keep]
        return x.detach(), (result.log_target[keep] - bonus(x).detach().to(torch.float64)).detach(), \
            float("nan"), result.log_z
    mala = MALA(settings.searcher_step_size, target_acceptance=settings.target_acceptance,
                adapt_factor=settings.searcher_adapt_factor, tolerance=0.0)
    state = init_state(x0, log_prob)
    kept_x, kept_log_r = [], []
    for step in range(settings.searcher_steps):
        state, accepted = mala.step(state, log_prob, generator)
        if step >= settings.searcher_burn_in and bool(accepted.any()):
            kept_x.append(state.x[accepted])
            kept_log_r.append(state.log_prob[accepted].to(torch.float64) - bonus(state.x[accepted]).detach().to(torch.float64))
    if not kept_x:
        return torch.empty(0, dim), torch.empty(0, dtype=torch.float64), mala.step_size, float("nan")
    log_r = torch.cat(kept_log_r).detach()
    return torch.cat(kept_x).detach(), log_r, mala.step_size, float(torch.logsumexp(log_r, 0) - math.log(len(log_r)))


def local_search(counter: EnergyCounter, buffer: RankedReplayBuffer, settings: SGDSSettings,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """TB + LS's local search: ``settings.ls_steps`` MALA steps (step size from
    ``searcher_step_size``, adapted toward ``target_acceptance``) from ``batch_size`` rank-sampled
    buffer points. Returns the end points, their log-rewards ``-E`` (float64, capped by
    ``max_energy`` as the Learner's) and the final step size; the calls count as Searcher calls."""
    start, _ = buffer.sample(settings.batch_size, generator)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -counter(x, "searcher").to(x.dtype)

    mala = MALA(settings.searcher_step_size, target_acceptance=settings.target_acceptance,
                adapt_factor=settings.searcher_adapt_factor, tolerance=0.0)
    state = init_state(start.to(torch.float64), log_prob)
    for _ in range(settings.ls_steps):
        state, _ = mala.step(state, log_prob, generator)
    log_r = state.log_prob.detach().to(torch.float64)
    if settings.max_energy is not None:
        log_r = log_r.clamp(min=-settings.max_energy)
    return state.x.detach(), log_r, mala.step_size


def _md_search(counter: EnergyCounter, dim: int, settings: SGDSSettings, bonus: Callable[[torch.Tensor], torch.Tensor],
               generator: torch.Generator, round_index: int, md: MDSystem) -> tuple[torch.Tensor, torch.Tensor]:
    """Langevin dynamics on ``E - alpha * RND`` (kJ/mol: ``kT0 (u - alpha RND)``) at this round's
    temperature; the kept states and their true log-rewards ``-u``."""

    kt0 = kT_kJ_per_mol(md.temperature)
    temperature = settings.searcher_temperatures[min(round_index, len(settings.searcher_temperatures) - 1)]

    def energy_and_forces(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            xg = x.detach().to(torch.float64).requires_grad_(True)
            e = kt0 * (counter(xg, "searcher").to(torch.float64) - bonus(xg).to(torch.float64))
            (grad,) = torch.autograd.grad(e.sum(), xg)
        return e.detach(), -grad.detach()

    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    engine = BatchedLangevin(energy_and_forces, md.masses, [temperature], dim=dim, n_ladders=settings.searcher_chains,
                             timestep_fs=settings.searcher_timestep_fs, friction_per_ps=settings.searcher_friction,
                             force_dtype=torch.float64, seed=seed)
    engine.set_positions(np.asarray(md.start, dtype=np.float64).reshape(1, dim))
    engine.draw_velocities()
    engine.run(settings.searcher_burn_in)
    kept_x, kept_log_r = [], []
    n_keep = (settings.searcher_steps - settings.searcher_burn_in) // settings.searcher_keep_every
    log, start = logging.getLogger("boltzflow.sgds"), time.time()
    for i in range(n_keep):
        if n_keep >= 10 and i % (n_keep // 10) == 0:  # long MD: a line every tenth
            log.info("md searcher at %.0f K: step %d of %d, %.0f s", temperature, engine.steps_done,
                     settings.searcher_steps, time.time() - start)
        engine.run(settings.searcher_keep_every)
        x = engine.x.clone()
        # engine.energy is kT0 (u - alpha RND) at x: the true log-reward is -u
        kept_x.append(x)
        kept_log_r.append(-(engine.energy.clone() / kt0) - bonus(x).detach().to(torch.float64))
    return torch.cat(kept_x), torch.cat(kept_log_r)


def learner_generator(generator: torch.Generator, device: torch.device, seed: int) -> torch.Generator:
    """The generator of the Learner's noise: ``generator`` itself on the CPU (so CPU results do
    not depend on the device option), a generator of its own on the device otherwise."""
    return generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(seed + 1)


def _new_learner(dim: int, settings: SGDSSettings, log_z: float, particles: tuple[int, int] | None = None,
                 node_types: tuple[int, ...] | None = None) -> DiffusionSampler:
    drift = build_drift(settings.network, dim, settings.hidden, settings.depth, settings.harmonics, particles,
                        node_types)
    return DiffusionSampler(drift, dim, sigma=settings.sigma, n_steps=settings.n_steps, log_z=log_z,
                            particles=particles)


def _new_rnd(dim: int, settings: SGDSSettings, particles: tuple[int, int] | None,
             node_types: tuple[int, ...] | None) -> RandomNetworkDistillation:
    if settings.rnd_network == "egnn":
        if particles is None:
            raise ValueError("rnd_network egnn needs a particle target (n_particles, spatial_dim)")
        return RandomNetworkDistillation(dim, hidden=settings.rnd_hidden, particles=particles, node_types=node_types)
    return RandomNetworkDistillation(dim, hidden=settings.rnd_hidden)


def reinitialise(sampler: DiffusionSampler, settings: SGDSSettings) -> DiffusionSampler:
    """A Learner with a freshly initialised drift network (zero output layer) and the same ``log Z``."""
    return _new_learner(sampler.dim, settings, float(sampler.log_z.detach()), sampler.particles,
                        getattr(sampler.drift, "node_types", None))


def _optimizer(sampler: DiffusionSampler, settings: SGDSSettings) -> torch.optim.Optimizer:
    return torch.optim.Adam([{"params": sampler.drift.parameters(), "lr": settings.lr_policy},
                             {"params": [sampler.log_z], "lr": settings.lr_log_z}])


def train_sgds(energy: Callable[[torch.Tensor], torch.Tensor], dim: int, settings: SGDSSettings,
               checkpoint_dir: str | Path | None = None, identity: str = "", log: logging.Logger | None = None,
               monitor: Callable[[DiffusionSampler, int], dict[str, float]] | None = None,
               particles: tuple[int, int] | None = None, md: MDSystem | None = None,
               node_types: tuple[int, ...] | None = None, device: str | torch.device = "cpu"
               ) -> tuple[DiffusionSampler, RankedReplayBuffer, pd.DataFrame, dict[str, Any]]:
    """Train a Learner by ``settings.method``; returns ``(sampler, buffer, history, summary)``.

    ``particles = (n, s)`` for a translation-invariant particle target: the Learner walks on the
    centre-of-mass-free subspace and Searcher points are moved there before they enter the buffer.
    ``md``: the molecule for the ``md`` Searcher; ``node_types``: one label per particle for the
    EGNN (the atoms of a peptide are not interchangeable). ``device``: where the Learner trains
    and ``energy`` is called for it (the Searcher, the buffer and RND stay on the CPU; on a GPU the
    Learner's noise comes from a generator of its own). The sampler is returned on the CPU.

    ``summary`` holds the energy calls (total, searcher, learner), the searcher's step sizes and
    how many points each round added to the buffer. With ``checkpoint_dir`` the whole state
    (networks, optimisers, buffer, RND, random generators, counters, history) is written every
    ``checkpoint_every`` iterations and at the end of each round; a run with the same
    ``identity`` resumes from it to the same result. ``monitor(sampler, iteration)``, when given,
    adds its values (ELBO, EUBO, ... from its own random generator, its energy calls not counted;
    :func:`~boltzflow.sgds.learner.elbo_monitor`) to every history row: the gap against energy
    calls spent.

    For each round ``r = 1 .. rounds``:

    1. **Searcher** on ``E`` (round 1) or on the novelty-augmented ``E(x) - alpha * RND(x)`` (later
       rounds), from ``N(0, prior_std^2 I)``. ``mala``: ``searcher_chains`` MALA chains whose step
       size adapts by a factor ``1 +- 0.01`` per step toward 57.4 % acceptance; the accepted proposals
       after ``searcher_burn_in`` steps go into the buffer. ``ais`` (Manywell in the paper):
       ``searcher_chains`` annealed-importance-sampling runs of ``searcher_steps`` MALA steps from the
       prior; their final states go into the buffer. ``md`` (peptides): Langevin dynamics of the
       molecule from its minimised structure, one temperature a round (600 K, then 300 K); the states
       after burn-in go into the buffer. Buffer points carry their true log-reward ``-E``.
       In round 1, ``log Z_theta`` starts at the Searcher's estimate of ``log Z`` (AIS: unbiased in
       ``Z``; MALA: the log-mean-exp of the kept log-rewards, a rough guess as in the authors' code).
    2. **Learner**: ``iterations[r]`` steps of trajectory balance; even steps on-policy (``B`` new
       trajectories, ``B`` energy calls), odd steps backward trajectories from rank-sampled buffer
       points (their stored log-rewards: no energy call). The RND predictor trains on the same
       buffer points. With ``mle_warmup`` > 0 the first iterations of each round instead maximise
       the forward path likelihood ``log P_F`` of backward trajectories from buffer points (the
       paper's warm-up for LJ-55 and peptides; ``log Z_theta`` is left alone). With
       ``time_grid: random`` every iteration's trajectories run on a new random time grid
       (:func:`~boltzflow.sgds.learner.time_grid`, the paper's randomised time steps for LJ-55 and
       peptides); evaluation stays on the uniform grid. ``exploration_std`` > 0 widens the on-policy
       trajectories' noise early in each round (off-policy exploration: ``log P_F`` stays the
       policy's), as the TB + Expl baselines of the paper's tables.
    3. **Re-initialisation**: a fresh drift network (and a fresh RND pair) for the next round;
       ``log Z_theta`` and the buffer are kept.

    Methods: ``sgds`` (the above), ``tb`` (on-policy trajectory balance only: no Searcher, no
    buffer, one round), ``tb_buffer`` (SGDS without the novelty bonus and without
    re-initialisation: trajectory balance with a Searcher-filled buffer), ``tb_ls`` (TB with local
    search, Sendera et al. 2024: one round; the Learner's own samples fill the buffer, and every
    ``ls_every`` iterations ``ls_steps`` MALA steps from a rank-sampled batch of buffer points add
    their end points; odd iterations train backward from the buffer) and ``pis`` (the path
    integral sampler: the reverse KL of path measures by the path-wise gradient, which needs the
    energy's gradient; one round, on-policy). Energy calls are counted in
    ``energy_calls`` (searcher and learner separately in the history).
    """

    log = log or logging.getLogger("boltzflow.sgds")
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    device = torch.device(device)
    learner_gen = learner_generator(generator, device, settings.seed)
    counter = EnergyCounter(energy)
    buffer = RankedReplayBuffer(settings.buffer_capacity, dim, settings.rank_weight)
    uses_searcher = settings.method in ("sgds", "tb_buffer")
    uses_buffer = uses_searcher or settings.method == "tb_ls"
    sampler = _new_learner(dim, settings, 0.0, particles, node_types).to(device)
    optimizer = _optimizer(sampler, settings)
    rnd = _new_rnd(dim, settings, particles, node_types) if settings.method == "sgds" else None
    rows: list[dict[str, float]] = []
    summary: dict[str, Any] = {"settings": asdict(settings), "searcher_step_sizes": [], "buffer_added": [],
                               "searcher_log_z": []}
    round_index, it, it_total, wall_offset, skipped = 0, 0, 0, 0.0, 0
    ck_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    state = load_resume_state(ck_path, identity, log) if ck_path is not None else None
    if state is not None:
        round_index, it, it_total = int(state["round"]), int(state["iteration"]), int(state["iteration_total"])
        skipped = int(state["skipped"])
        sampler.load_state_dict(state["sampler"])
        optimizer.load_state_dict(state["optimizer"])
        if rnd is not None:
            rnd.load_state_dict(state["rnd"])
            rnd.optimizer.load_state_dict(state["rnd_optimizer"])
        buffer.load_state_dict(state["buffer"])
        generator.set_state(state["generator"])
        if learner_gen is not generator:
            learner_gen.set_state(state["learner_generator"].cpu())
        torch.set_rng_state(state["torch_rng"])
        counter.calls = {"searcher": int(state["searcher_calls"]), "learner": int(state["learner_calls"])}
        summary["searcher_step_sizes"] = [float(v) for v in state["searcher_step_sizes"]]
        summary["buffer_added"] = [int(v) for v in state["buffer_added"]]
        summary["searcher_log_z"] = [float(v) for v in state["searcher_log_z"]]
        rows = [dict(zip(state["history_columns"], r)) for r in state["history"]]
        wall_offset = rows[-1]["wall_s"] if rows else 0.0
        log.info("resuming from %s at round %d, iteration %d", ck_path, round_index + 1, it)

    def save_checkpoint() -> None:
        if ck_path is None:
            return
        columns = list(rows[0]) if rows else []
        payload = {"identity": identity, "round": round_index, "iteration": it, "iteration_total": it_total,
                   "skipped": skipped,
                   "sampler": sampler.state_dict(), "optimizer": optimizer.state_dict(), "buffer": buffer.state_dict(),
                   "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                   "learner_generator": learner_gen.get_state(),
                   "searcher_calls": counter.calls["searcher"], "learner_calls": counter.calls["learner"],
                   "searcher_step_sizes": summary["searcher_step_sizes"], "buffer_added": summary["buffer_added"],
                   "searcher_log_z": summary["searcher_log_z"],
                   "history_columns": columns, "history": [[float(r[c]) for c in columns] for r in rows]}
        if rnd is not None:
            payload.update({"rnd": rnd.state_dict(), "rnd_optimizer": rnd.optimizer.state_dict()})
        ck_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(ck_path) as tmp:
            torch.save(payload, tmp)

    start = time.time()
    while round_index < settings.rounds:
        if it == 0 and uses_searcher:
            bonus = rnd if (rnd is not None and round_index > 0) else None
            x, log_r, step, log_z_hat = run_searcher(counter, dim, settings, bonus, generator, round_index, md)
            added = buffer.add(sampler.project(x), log_r)
            summary["searcher_step_sizes"].append(step)
            summary["buffer_added"].append(added)
            summary["searcher_log_z"].append(log_z_hat)
            if round_index == 0 and added and math.isfinite(log_z_hat):
                with torch.no_grad():
                    sampler.log_z.fill_(log_z_hat)
            log.info("round %d: %s searcher added %d points (buffer %d), step size %.3g, log Z estimate %.4g, "
                     "%d energy calls so far", round_index + 1, settings.searcher, added, len(buffer), step, log_z_hat,
                     counter.total)
            if round_index > 0 and settings.method == "sgds":
                sampler = reinitialise(sampler, settings).to(device)
                optimizer = _optimizer(sampler, settings)
                rnd = _new_rnd(dim, settings, particles, node_types)
        window: list[float] = []
        while it < settings.iterations[round_index]:
            if settings.method == "tb_ls" and it > 0 and it % settings.ls_every == 0 and len(buffer) > 0:
                x_ls, log_r_ls, step = local_search(counter, buffer, settings, generator)
                buffer.add(sampler.project(x_ls), log_r_ls)
                summary["searcher_step_sizes"].append(step)
            warm_up = uses_searcher and it < settings.mle_warmup and len(buffer) > 0
            # a random grid comes from the CPU generator, drawn only when asked for (uniform runs keep their stream)
            times = time_grid(settings.n_steps, "random", generator) if settings.time_grid == "random" else None
            if warm_up or (uses_buffer and it % 2 == 1 and len(buffer) > 0):  # backward from the buffer
                x_final, log_r = buffer.sample(settings.batch_size, generator)
                traj = sampler.backward_trajectories(x_final.to(device), learner_gen, times)
                log_r = log_r.to(device)
                if rnd is not None:
                    rnd.update(x_final)
            else:  # on-policy; PIS takes the path-wise gradient through the trajectories and the energy
                pis = settings.method == "pis"
                traj = sampler.sample_trajectories(settings.batch_size, learner_gen, reparameterise=pis, times=times,
                                                   exploration_std=settings.exploration_at(it, round_index))
                final = traj.final.to(torch.float64)
                energies = counter(final if pis else final.detach(), "learner")
                log_r = -(energies if settings.max_energy is None else energies.clamp(max=settings.max_energy))
                if settings.method == "tb_ls":  # the Learner's own samples feed the buffer
                    buffer.add(final.detach(), log_r.detach())
            if warm_up:
                loss = path_mle_loss(traj)
            else:
                loss = (pis_loss if settings.method == "pis" else trajectory_balance_loss)(sampler, traj, log_r)
            if not guarded_step(loss, optimizer, sampler.drift.parameters(), settings.grad_clip):
                skipped += 1
            window.append(float(loss.detach()))
            it += 1
            it_total += 1
            if it_total % settings.history_every == 0:
                rows.append({"round": round_index + 1, "iteration": it_total, "loss": float(np.nanmean(window)),
                             "log_z": float(sampler.log_z.detach()), "energy_calls": counter.total,
                             "searcher_calls": counter.calls["searcher"], "learner_calls": counter.calls["learner"],
                             "buffer_size": len(buffer), "skipped_steps": skipped,
                             "wall_s": wall_offset + time.time() - start})
                if monitor is not None:
                    rows[-1].update(monitor(sampler, it_total))
                window = []
                log.info("round %d iteration %d: %s loss %.4g, log Z %.4f, %d energy calls", round_index + 1, it_total,
                         "PIS" if settings.method == "pis" else "TB", rows[-1]["loss"], rows[-1]["log_z"],
                         counter.total)
            if it % settings.checkpoint_every == 0 and it < settings.iterations[round_index]:
                save_checkpoint()
        round_index, it = round_index + 1, 0
        save_checkpoint()
    if skipped:
        log.warning("%d of %d optimizer steps skipped: non-finite loss or gradient", skipped, it_total)
    summary.update({"skipped_steps": skipped, "energy_calls": counter.total, "searcher_calls": counter.calls["searcher"],
                    "learner_calls": counter.calls["learner"], "wall_s": wall_offset + time.time() - start})
    return sampler.to("cpu"), buffer, pd.DataFrame(rows), summary
