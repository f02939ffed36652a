"""One sampler run of the cross-method comparison at a budget of target energy calls, with the
calls counted by each method's own account (:func:`run_method` lists the methods)."""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import mdtraj
import numpy as np
import torch

from boltzflow.couplings import cnf_pairs
from boltzflow.evaluation import kish_ess, log_z_importance
from boltzflow.flows import build_flow, latent_frame, to_latent
from boltzflow.io import config_hash
from boltzflow.mcmc import MALA, CountingLogProb, GlobalLocal, init_state, mala_step
from boltzflow.mcmc.tempering import neighbour_swap
from boltzflow.md import BatchedLangevin, system_masses
from boltzflow.sgds.learner import log_weights
from boltzflow.sgds.settings import SGDSSettings
from boltzflow.sgds.train import evaluation_grid, train_sgds
from boltzflow.shootout.settings import FLOW_METHODS, METHODS, STRUCTURED_METHODS
from boltzflow.targets.base import Target
from boltzflow.targets.peptide import PeptideTarget
from boltzflow.training import TrainSettings, fit_cnf, fit_flow, make_ot_pairs
from boltzflow.units import kT_kJ_per_mol

__all__ = ["ShootoutRun", "run_method", "run_pt", "run_flow", "run_flowmc", "diffusion_settings", "run_diffusion"]


@dataclass
class ShootoutRun:
    """What a runner returns: points ``x`` ``(n, d)`` and their ``energy`` ``(n,)`` (float64),
    ``log_w`` ``(n,)`` unnormalised log importance weights or None (equally weighted samples),
    ``log_z`` the method's estimate of ``log Z`` (NaN where it makes none), ``energy_calls`` by the
    method's own account, ``wall_s`` and method-specific ``details``."""

    x: np.ndarray
    energy: np.ndarray
    log_w: np.ndarray | None
    log_z: float
    energy_calls: int
    wall_s: float
    details: dict[str, Any] = field(default_factory=dict)


def _budget_error(method: str, budget: int, needed: int, what: str) -> ValueError:
    return ValueError(f"{method}: a budget of {budget} energy calls is below the {needed} that {what} needs")


@contextlib.contextmanager
def _checkpoints(folder: str | Path | None, prefix: str):
    """The folder a training run checkpoints to: ``folder`` when given (a re-run after a kill
    resumes from it), else a temporary one (removed afterwards)."""
    if folder is not None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        yield str(folder)
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield tmp


def _energy64(target: Target) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: target.energy(x.to(torch.float64))


# ---------------------------------------------------------------- parallel tempering


def _pt_chains(target: Target, budget: int, settings: Mapping[str, Any], generator: torch.Generator,
               init_std: float, keep_points: int, method: str = "pt") -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Replica exchange with MALA on ``budget`` calls: the ``T = 1`` states (and energies) of the
    second half of the steps (every step, or every k-th so that at most ``keep_points`` are kept),
    and the calls spent, ``C K (steps + 1)``."""
    chains, n_temps = int(settings["chains"]), int(settings["temperatures"])
    per_step = chains * n_temps
    steps = budget // per_step - 1  # the initial evaluation costs one step's calls
    if steps < 2:
        raise _budget_error(method, budget, 3 * per_step, f"{chains} ladders x {n_temps} temperatures for 2 steps")
    t_max = float(settings["t_max"])
    temps = torch.tensor([t_max ** (k / max(n_temps - 1, 1)) for k in range(n_temps)], dtype=torch.float64)
    beta = 1.0 / temps
    # rows are ladder-major: row = ladder * K + slot; slot k is held at temperature temps[k]
    beta_rows = beta.repeat(chains)
    energy = _energy64(target)

    def log_prob(x: torch.Tensor) -> torch.Tensor:
        return -beta_rows.to(x.dtype) * energy(x).to(x.dtype)

    x0 = init_std * torch.randn(per_step, target.dim, generator=generator, dtype=torch.float64)
    state = init_state(x0, log_prob)
    step = torch.full((n_temps,), float(settings["step_size"]), dtype=torch.float64) * temps  # h ~ T
    burn_in = steps // 2
    stride = max(1, math.ceil(chains * (steps - burn_in) / int(keep_points)))  # at most keep_points states
    kept_x, kept_e = [], []
    accepted_sum = torch.zeros(n_temps, dtype=torch.float64)
    swaps_tried = swaps_accepted = 0
    for s in range(steps):
        state, accepted = mala_step(state, log_prob, step.repeat(chains), generator)
        acc = accepted.to(torch.float64).view(chains, n_temps).mean(0)
        if s < burn_in:  # adapt each temperature's step toward 57.4 % acceptance, then freeze it
            step = torch.where(acc > 0.574, step * 1.02, step / 1.02)
        else:
            accepted_sum += acc
        # swap neighbouring slots of every ladder (energies are known: no calls)
        u = (-state.log_prob / beta_rows).view(chains, n_temps)
        lo = torch.arange(s % 2, n_temps - 1, 2)
        if len(lo):
            ok, perm = neighbour_swap(u, beta, lo, generator, log_uniform=True)
            swaps_tried += ok.numel()
            swaps_accepted += int(ok.sum())
            rows = (torch.arange(chains)[:, None] * n_temps + perm).reshape(-1)
            x_new = state.x[rows]
            u_new = u.reshape(-1)[rows]
            # the gradient of -beta E scales with the slot's beta: rescale the moved rows' gradients
            grad = state.grad[rows] * (beta_rows / beta_rows[rows])[:, None]
            state = type(state)(x_new, -beta_rows * u_new, grad)
        if s >= burn_in and (s - burn_in) % stride == 0:
            cold = torch.arange(chains) * n_temps  # slot 0 of every ladder: T = 1
            kept_x.append(state.x[cold].clone())
            kept_e.append((-state.log_prob[cold]).clone())
    x = torch.cat(kept_x).numpy()
    e = torch.cat(kept_e).numpy()
    calls = per_step * (steps + 1)
    details = {"pt_steps": steps, "pt_swap_acceptance": swaps_accepted / max(swaps_tried, 1),
               "pt_mala_acceptance_cold": float(accepted_sum[0]) / max(steps - burn_in, 1)}
    return x, e, calls, details


def _md_chains(target: PeptideTarget, budget: int, opts: Mapping[str, Any], seed: int, keep_points: int,
               method: str = "pt") -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Parallel-tempering MD of a peptide on ``budget`` force calls with the torch engine
    (:class:`~boltzflow.md.BatchedLangevin`, BAOAB, one force evaluation per replica and step,
    counted where the engine asks for it): the target-temperature states (nm) and their reduced
    energies at evenly spaced steps after ``burn_in`` (at most ``keep_points``), and the calls spent,
    ``ladders K (steps + 1)`` with the start structure's evaluation."""
    ladders, n_temps = int(opts["ladders"]), int(opts["temperatures"])
    per_step = ladders * n_temps
    steps = budget // per_step - 1
    if steps < 2:
        raise _budget_error(method, budget, 3 * per_step, f"{ladders} ladders x {n_temps} temperatures for 2 MD steps")
    t0 = float(target.temperature)
    t_max = max(float(opts["max_temperature_K"]), t0)
    temps = [t0 * (t_max / t0) ** (k / max(n_temps - 1, 1)) for k in range(n_temps)]
    kt = kT_kJ_per_mol(t0)
    calls = 0

    def energy_and_forces(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # kJ/mol, as the engine takes
        nonlocal calls
        calls += len(x)
        energy, forces = target.energy_and_forces(x)  # kT and kT/nm
        return energy * kt, forces * kt

    masses = system_masses(target.openmm_system, target.topology, opts["hydrogen_mass_amu"])
    engine = BatchedLangevin(energy_and_forces, masses, temps, dim=target.dim, n_ladders=ladders,
                             timestep_fs=float(opts["timestep_fs"]), friction_per_ps=float(opts["friction_per_ps"]),
                             seed=int(seed))
    engine.set_positions(target.positions.reshape(-1))
    engine.draw_velocities()
    burn_in = int(float(opts["burn_in"]) * steps)
    stride = max(1, math.ceil(ladders * (steps - burn_in) / int(keep_points)))
    every = int(opts["exchange_every"])
    cold = torch.arange(ladders) * n_temps  # slot 0 of every ladder: the target temperature
    kept_x, kept_e = [], []
    done, next_save = 0, burn_in + stride
    while done < steps:
        stop = min((done // every + 1) * every, next_save, steps)
        engine.run(stop - done)
        done = stop
        if done % every == 0:
            engine.exchange()
        if done == next_save:
            kept_x.append(engine.x[cold].clone())
            kept_e.append(engine.energy[cold] / float(engine.kT_ladder[0]))
            next_save += stride
    engine.check_finite(done)
    details = {"pt_steps": steps, "md_ps": steps * float(opts["timestep_fs"]) * 1e-3,
               "pt_swap_acceptance": float(np.nanmean(engine.swap_acceptance())) if n_temps > 1 else math.nan}
    return torch.cat(kept_x).numpy(), torch.cat(kept_e).numpy(), calls, details


def _tempering_samples(target: Target, budget: int, settings: Mapping[str, Any], seed: int,
                       generator: torch.Generator, keep_points: int,
                       method: str = "pt") -> tuple[np.ndarray, np.ndarray, int, dict[str, Any]]:
    """Parallel tempering on ``budget`` calls: MD (section ``md``) for a peptide, MALA (``pt``) otherwise."""
    if isinstance(target, PeptideTarget):
        return _md_chains(target, budget, settings["md"], seed, keep_points, method)
    return _pt_chains(target, budget, settings["pt"], generator, float(settings["init_std"]), keep_points, method)


def run_pt(target: Target, budget: int, seed: int, settings: Mapping[str, Any]) -> ShootoutRun:
    """Parallel tempering on ``budget`` energy calls (see :func:`run_method`)."""
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(int(seed))
    x, e, calls, details = _tempering_samples(target, int(budget), settings, int(seed), gen, int(settings["keep_points"]))
    return ShootoutRun(x, e, None, math.nan, calls, time.perf_counter() - start, details)


# ---------------------------------------------------------------- flows


def _architecture(opts: Mapping[str, Any], frame: Mapping[str, Any]) -> dict[str, Any]:
    return {"transform": opts["transform"], "layers": int(opts["layers"]), "hidden": int(opts["hidden"]),
            "depth": int(opts["depth"]), "frame": dict(frame),
            **({"bins": int(opts["bins"]), "bound": float(opts["bound"])} if opts["transform"] == "spline" else {})}


def _vector_flow(opts: Mapping[str, Any], dim: int, scale: float) -> dict[str, Any]:
    return _architecture(opts, {"kind": "vector", "dim": int(dim), "scale": float(scale)})


def _structured(target: Target) -> bool:
    """A peptide or a translation-invariant particle system (not a plain density)."""
    return isinstance(target, PeptideTarget) or bool(getattr(target, "com_free", False))


def _flow_frame(target: Target, x_train: np.ndarray, opts: Mapping[str, Any]) -> dict[str, Any]:
    """The flow's coordinates: the peptide frame ``opts["frame"]`` fitted to the training states;
    the centroid-free coordinates of a particle system (whose density has no normalisable
    translational part), scaled by their root mean square; else the target's own coordinates
    scaled by their standard deviation."""
    if isinstance(target, PeptideTarget):
        return latent_frame(x_train, target.n_atoms, kind=opts["frame"],
                            topology=mdtraj.Topology.from_openmm(target.topology))
    if getattr(target, "com_free", False):
        if target.spatial_dim != 3:
            raise ValueError(f"{target.name}: the flows' centroid-free frame needs particles in 3 dimensions, "
                             f"not {target.spatial_dim}")
        return latent_frame(x_train, target.n_particles, kind="centroid")
    return {"kind": "vector", "dim": int(target.dim), "scale": float(np.std(x_train)) or 1.0}


def _regflow_pairs(x_train: np.ndarray, frame: Mapping[str, Any], opts: Mapping[str, Any], seed: int, folder: Path,
                   identity: str, log: logging.Logger | None) -> tuple[np.ndarray, np.ndarray]:
    """RegFlow's regression pairs ``(z0, z1)`` in the flow's latent coordinates: exact batch-OT
    pairs of prior draws and the training points, or a CNF teacher's reflow pairs."""
    n_pairs = int(opts["n_pairs"])
    if opts["coupling"] == "ot":
        z0, z1, _ = make_ot_pairs(x_train, frame, batch_size=int(opts["ot_batch_size"]), n_pairs=n_pairs,
                                  seed=int(seed), log=log)
        return z0, z1
    latent = to_latent(x_train, frame)
    teacher = opts["teacher"]
    train = TrainSettings(steps=int(teacher["steps"]), batch_size=int(teacher["batch_size"]), lr=float(teacher["lr"]),
                          checkpoint_every=int(teacher["steps"]), history_every=int(teacher["steps"]), seed=int(seed))
    model, _, _ = fit_cnf(latent, hidden=int(teacher["hidden"]), layers=int(teacher["layers"]), settings=train,
                          checkpoint_dir=folder / "teacher", prior_pairing=teacher["prior_pairing"],
                          identity=config_hash({"teacher": identity}), log=log)
    model.eval()
    z0, z1, _ = cnf_pairs(model, n_pairs, seed=int(seed), method="rk4", steps=int(teacher["solver_steps"]), log=log)
    return z0, z1


def _energies(target: Target, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Reduced energies (float64) of proposals and the number evaluated: NaN for rows with
    non-finite coordinates (a peptide flow's proposal beyond a torsion cut), which cost no call."""
    energy = torch.full((len(x),), torch.nan, dtype=torch.float64)
    ok = torch.isfinite(x).all(dim=1)
    if ok.any():
        energy[ok] = target.energy(x[ok]).to(torch.float64)
    return energy, int(ok.sum())


def run_flow(method: str, target: Target, budget: int, seed: int, settings: Mapping[str, Any],
             log: logging.Logger | None = None, checkpoint_dir: str | Path | None = None) -> ShootoutRun:
    """A Boltzmann generator: a flow trained on parallel-tempering samples (``flow_mle``: by
    maximum likelihood; ``flow_regflow``: by RegFlow regression onto the pairs of the
    ``flow_regflow`` section), then importance-weighted proposals with the rest of the budget. The
    flow, its training and the budget split are ``flow_mle``'s for both. Training checkpoints to
    ``checkpoint_dir`` (resumed when the same run is started again)."""
    if method not in FLOW_METHODS:
        raise ValueError(f"not a flow method: {method!r}")
    start = time.perf_counter()
    opts = settings["flow_mle"]
    gen = torch.Generator().manual_seed(int(seed))
    if opts.get("proposals") is None:
        pt_budget = int(float(opts["pt_fraction"]) * budget)
    else:
        pt_budget = int(budget) - int(opts["proposals"])
    x_train, _, pt_calls, details = _tempering_samples(target, pt_budget, settings, int(seed), gen,
                                                       int(opts["training_points"]), method=method)
    n_proposals = int(budget) - pt_calls
    if n_proposals < 2:
        raise _budget_error(method, budget, pt_calls + 2, "its parallel-tempering data and 2 proposals")
    architecture = _architecture(opts, _flow_frame(target, x_train, opts))
    train = TrainSettings(steps=int(opts["steps"]), batch_size=int(opts["batch_size"]), lr=float(opts["lr"]),
                          checkpoint_every=int(opts["steps"]), history_every=int(opts["steps"]), seed=int(seed))
    regflow = dict(settings["flow_regflow"]) if method == "flow_regflow" else None
    pt_settings = settings["md"] if isinstance(target, PeptideTarget) else settings["pt"]
    identity = config_hash({"method": method, "architecture": architecture, "train": asdict(train),
                            "budget": int(budget), "pt": dict(pt_settings), "init_std": settings["init_std"],
                            **({"regflow": regflow} if regflow else {})})
    with _checkpoints(checkpoint_dir, "shootout-flow-") as folder:
        if regflow is None:
            flow, _, _ = fit_flow("mle", architecture, train, folder, train_x=x_train, identity=identity, log=log)
        else:
            pairs = _regflow_pairs(x_train, architecture["frame"], regflow, int(seed), Path(folder), identity, log)
            flow, _, _ = fit_flow("regflow", architecture, train, Path(folder) / "flow", pairs=pairs,
                                  regflow=regflow, identity=identity, log=log)
    flow.eval()
    keep = int(settings["keep_points"])
    xs, energies, log_ws = [], [], []
    evaluated = 0
    with torch.no_grad():
        for first in range(0, n_proposals, 65_536):
            x, log_q = flow.sample(min(65_536, n_proposals - first), gen)
            x = x.to(torch.float64)
            energy, calls = _energies(target, x)
            evaluated += calls
            log_w = (-energy - log_q.to(torch.float64)).numpy()
            log_ws.append(np.where(np.isfinite(log_w), log_w, -np.inf))
            if first < keep:  # points for the metrics: the first keep_points proposals
                xs.append(x[: keep - first].numpy())
                energies.append(energy[: keep - first].numpy())
    all_log_w = np.concatenate(log_ws)
    x, energy = np.concatenate(xs), np.concatenate(energies)
    log_w = all_log_w[: len(x)]
    details.update({"training_samples": len(x_train), "proposals": n_proposals, "pt_calls": pt_calls,
                    "invalid_proposals": n_proposals - evaluated})
    details["ess_all"] = kish_ess(all_log_w)
    return ShootoutRun(x, energy, log_w, log_z_importance(all_log_w), pt_calls + evaluated,
                      time.perf_counter() - start, details)


def run_flowmc(target: Target, budget: int, seed: int, settings: Mapping[str, Any]) -> ShootoutRun:
    """Flow-assisted MCMC (i-SIR + MALA) with a flow trained on its own chains, on ``budget`` calls.

    Each cycle is one :meth:`~boltzflow.mcmc.GlobalLocal.run` call: the chains' start is evaluated
    (``chains`` calls), one i-SIR step proposes ``n_particles - 1`` points per chain, the chains
    that moved get their gradient (at most ``chains``), then ``n_local`` MALA steps; after it the
    flow takes ``flow_steps`` maximum-likelihood steps on the states of the last ``bank_cycles``
    cycles. Cycles run while a whole one fits in the budget. The samples are the chains' states at
    the end of each cycle of the second half, with the energies the chains computed there."""
    start = time.perf_counter()
    opts = settings["flowmc"]
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))  # the flow's initial weights
    chains, particles, n_local = int(opts["chains"]), int(opts["n_particles"]), int(opts["n_local"])
    worst_cycle = chains * (1 + particles - 1 + 1 + n_local)
    if budget < 2 * worst_cycle:
        raise _budget_error("flowmc", budget, 2 * worst_cycle, f"{chains} chains for 2 cycles")
    energy = _energy64(target)
    counted = CountingLogProb(lambda x: -energy(x).to(x.dtype))
    init_std = float(settings["init_std"])
    flow = build_flow({**_vector_flow(opts, target.dim, init_std), "dtype": "float64"})
    optimiser = torch.optim.Adam(flow.parameters(), lr=float(opts["lr"]))
    mala = MALA(float(opts["step_size"]), adapt_factor=1.02, tolerance=0.0)
    sampler = GlobalLocal(mala, proposal=flow, global_kind="isir", n_particles=particles, n_global=1, n_local=n_local)
    x = init_std * torch.randn(chains, target.dim, generator=gen, dtype=torch.float64)
    ends: list[tuple[torch.Tensor, torch.Tensor]] = []
    bank: list[torch.Tensor] = []
    acceptance: list[float] = []
    while counted.calls + worst_cycle <= budget:
        run = sampler.run(x, counted, 1, generator=gen, keep="all")
        x = run.x.detach()
        ends.append((x, -run.log_prob.detach().to(torch.float64)))
        acceptance.append(run.global_acceptance)
        bank = (bank + [run.states.reshape(-1, target.dim).detach()])[-int(opts["bank_cycles"]):]
        data = torch.cat(bank)
        for _ in range(int(opts["flow_steps"])):
            batch = data[torch.randint(0, len(data), (int(opts["batch_size"]),), generator=gen)]
            loss = -flow.log_prob(batch).mean()
            if torch.isfinite(loss):
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
                optimiser.step()
    kept = ends[len(ends) // 2:]
    samples = torch.cat([k[0] for k in kept]).numpy()
    energies = torch.cat([k[1] for k in kept]).numpy()
    details = {"cycles": len(ends), "global_acceptance": float(np.mean(acceptance[len(acceptance) // 2:])),
               "mala_step_size": mala.step_size}
    return ShootoutRun(samples, energies, None, math.nan, counted.calls, time.perf_counter() - start, details)


# ---------------------------------------------------------------- diffusion samplers


def diffusion_settings(base: SGDSSettings, method: str, budget: int, n_eval: int, searcher_fraction: float) -> SGDSSettings:
    """``base`` with the iterations (and, for SGDS, the Searcher's steps) sized so that training
    plus ``n_eval`` evaluation samples spend at most ``budget`` energy calls.

    Per iteration of a round: ``tb`` and ``pis`` spend ``B`` calls (on-policy); ``sgds`` spends
    ``B`` on its even iterations only, and its Searcher ``chains x (steps + 1)`` per round;
    ``tb_ls`` spends ``B`` on even iterations and ``(ls_steps + 1) B`` on every ``ls_every``-th."""
    b = base.batch_size
    left = int(budget) - int(n_eval)
    rounds = base.rounds if method == "sgds" else 1
    extra: dict[str, Any] = {}
    if method == "sgds":
        steps = int(searcher_fraction * left) // (rounds * base.searcher_chains) - 1
        if steps < 2:
            raise _budget_error(method, budget, n_eval + rounds * base.searcher_chains * 3,
                                "its Searcher (2 steps a round) and the evaluation samples")
        left -= rounds * base.searcher_chains * (steps + 1)
        iterations = ((left // rounds) // b * 2,) * rounds  # on-policy every other iteration
        extra = {"searcher_steps": steps, "searcher_burn_in": min(base.searcher_burn_in, steps // 2)}
    elif method in ("tb", "pis"):
        iterations = (left // b,)
    elif method == "tb_ls":
        def calls(it: int) -> int:  # on-policy even iterations + local search at it = ls_every, 2 ls_every, ...
            return b * ((it + 1) // 2) + ((it - 1) // base.ls_every) * (base.ls_steps + 1) * b
        it = max(left // b * 2, 1)
        while it > 1 and calls(it) > left:
            it -= 1
        iterations = (it,)
    else:
        raise ValueError(f"not a diffusion sampler: {method!r}")
    if min(iterations) < 2:
        raise _budget_error(method, budget, n_eval + 2 * b * (2 if method == "sgds" else 1),
                            "2 training iterations and the evaluation samples")
    return replace(base, method=method, iterations=iterations, **extra)


def run_diffusion(target: Target, budget: int, seed: int, settings: Mapping[str, Any], method: str,
                  base: SGDSSettings, log: logging.Logger | None = None,
                  checkpoint_dir: str | Path | None = None) -> ShootoutRun:
    """A diffusion sampler trained on its share of ``budget``, then ``n_eval`` forward samples with
    trajectory log-weights; the energy calls are the SGDS counter's (restored with the rest of the
    state when a killed run resumes from ``checkpoint_dir``) plus the evaluation's."""
    start = time.perf_counter()
    n_eval = int(settings["n_eval"])
    run_settings = diffusion_settings(replace(base, seed=int(seed)), method, int(budget), n_eval,
                                      float(settings["sgds"]["searcher_fraction"]))
    energy = _energy64(target)
    identity = config_hash({"settings": asdict(run_settings), "budget": int(budget), "target": target.dim})
    with _checkpoints(checkpoint_dir, "shootout-sgds-") as folder:
        sampler, _, _, summary = train_sgds(energy, target.dim, run_settings, checkpoint_dir=folder,
                                            identity=identity, log=log)
    eval_calls = CountingLogProb(energy)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    grid = evaluation_grid(run_settings)
    xs, es, lws = [], [], []
    with torch.no_grad():
        for first in range(0, n_eval, 1000):
            traj = sampler.sample_trajectories(min(1000, n_eval - first), gen, times=grid)
            x = traj.final.to(torch.float64)
            e = eval_calls(x).to(torch.float64)
            xs.append(x)
            es.append(e)
            lws.append(log_weights(traj, -e))
    x, e = torch.cat(xs), torch.cat(es)
    log_w = torch.cat(lws).numpy()
    log_w = np.where(np.isfinite(log_w), log_w, -np.inf)
    details = {"iterations": list(run_settings.iterations), "searcher_steps": run_settings.searcher_steps
               if method == "sgds" else 0, "searcher_calls": int(summary["searcher_calls"]),
               "learner_calls": int(summary["learner_calls"]), "evaluation_calls": eval_calls.calls}
    return ShootoutRun(x.numpy(), e.to(torch.float64).numpy(), log_w, log_z_importance(log_w),
                      int(summary["energy_calls"]) + eval_calls.calls, time.perf_counter() - start, details)


def run_method(method: str, target: Target, budget: int, seed: int, settings: Mapping[str, Any], *,
               sgds_settings: SGDSSettings | None = None, log: logging.Logger | None = None,
               checkpoint_dir: str | Path | None = None) -> ShootoutRun:
    """Run ``method`` (one of :data:`~boltzflow.shootout.settings.METHODS`) on ``target`` with
    ``budget`` energy calls; the diffusion samplers take their per-iteration settings from
    ``sgds_settings``. The methods that train a network (the flows and the diffusion samplers,
    minutes to hours at large budgets) checkpoint to ``checkpoint_dir`` and resume from it when
    the same run is started again; ``pt`` and ``flowmc`` (seconds at 1e6 calls) start over.

    Every runner takes a :class:`~boltzflow.targets.base.Target`, a budget (energy evaluations of
    single configurations; an energy with its gradient counts as one), a seed and its settings, and
    returns a :class:`ShootoutRun`: a sample set (with importance log-weights where the method has
    them), the energies of its points, the method's own estimate of ``log Z`` where it makes one, and
    the energy calls it spent *by its own accounting*. Each method keeps that account itself (the
    replica-exchange runner from its steps, the flows from their proposals, flow-assisted MCMC with
    :class:`~boltzflow.mcmc.CountingLogProb`, the diffusion samplers with the SGDS energy counter),
    so that a test can hold the account against a target that counts what it is really asked.

    - ``pt``: parallel tempering (the baseline). On a density: MALA moves, ``chains`` ladders of
      ``temperatures`` geometric temperatures up to ``t_max``, a neighbour swap round after every
      step, step sizes adapted per temperature during the first half; the samples are the ``T = 1``
      states of the second half. On a peptide (:class:`~boltzflow.targets.peptide.PeptideTarget`):
      Langevin MD with the torch engine (section ``md``), one force call per replica and step.
    - ``flow_mle``, ``flow_regflow``: Boltzmann generators: ``pt`` with ``pt_fraction`` of the
      budget (or all but ``proposals`` calls) makes the training data of a coupling flow trained by maximum likelihood, or by RegFlow
      regression onto OT or CNF-teacher pairs; the rest of the budget is spent on
      importance-weighted proposals of the flow (``log Z`` and the ESS from all of them, the sample
      set from the first ``keep_points``). On a particle system the flow works in centroid-free
      coordinates; on a peptide in the frame ``flow_mle.frame``.
    - ``flowmc``: flow-assisted MCMC on the target (the sampler of the flowMC-EBM paper): persistent
      chains moved by cycles of one i-SIR step with a flow proposal and ``n_local`` MALA steps, the
      flow trained by maximum likelihood on the chains' states as they go (adaptive, as flowMC);
      the samples are the chains' states at the end of each cycle of the second half.
    - ``sgds``, ``tb``, ``tb_ls``, ``pis``: the diffusion samplers of :mod:`boltzflow.sgds`, with
      their per-iteration settings from the ``sgds`` config section and their iterations (and the
      Searcher's steps) sized to the budget; ``n_eval`` forward samples with their trajectory
      log-weights (counted) are the sample set, and ``log Z`` is their importance-sampling estimate.
    """
    if method not in METHODS:
        raise ValueError(f"unknown shootout method {method!r}; known: {', '.join(METHODS)}")
    if int(budget) < 1:
        raise ValueError(f"budget must be >= 1 energy call, got {budget}")
    if method == "pt":
        return run_pt(target, budget, seed, settings)
    if _structured(target) and method not in STRUCTURED_METHODS:
        raise ValueError(f"{method} does not run on a peptide or particle system (their methods: "
                         f"{', '.join(STRUCTURED_METHODS)})")
    if method in FLOW_METHODS:
        return run_flow(method, target, budget, seed, settings, log=log, checkpoint_dir=checkpoint_dir)
    if method == "flowmc":
        return run_flowmc(target, budget, seed, settings)
    if sgds_settings is None:
        raise ValueError(f"{method}: needs sgds_settings (the per-iteration settings of the sgds section)")
    return run_diffusion(target, budget, seed, settings, method, sgds_settings, log=log, checkpoint_dir=checkpoint_dir)
