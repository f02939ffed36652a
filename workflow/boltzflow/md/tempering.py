"""Parallel tempering with the batched torch engine: ladders, the run loop, checkpoint and resume.

:func:`run_parallel_tempering` drives a :class:`~boltzflow.md.torch_engine.BatchedLangevin` through
equilibration and production, exchanges configurations between neighbouring temperatures, saves the
target-temperature frames as a sample set, and checkpoints so that a killed job resumes bitwise.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import openmm
import openmm.app as app
import torch

from boltzflow.io import config_hash, write_sample_set
from boltzflow.md.settings import TorchMDSettings
from boltzflow.md.torch_engine import BatchedLangevin, system_masses
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.units import kT_kJ_per_mol, resolve_device

__all__ = ["CHECKPOINT_NAME", "run_parallel_tempering"]

log_default = logging.getLogger("boltzflow.torch_md")

CHECKPOINT_NAME = "torch_md_state.pt"
_CHECK_STEPS = 200  # look for a blow-up at least this often


def _resolve_compile(setting: bool | str, device: torch.device, settings: TorchMDSettings, ff: Any) -> bool:
    """Whether to compile the force field, decided once from the settings so that a resumed run
    uses the same kernels as an uninterrupted one."""
    if device.type != "cpu" or setting is False:
        return False
    if setting is True:
        return True
    evaluations = settings.n_replicas * settings.total_steps
    return settings.n_replicas >= getattr(ff, "min_compiled_batch", 64) and \
        evaluations >= getattr(ff, "compile_after", 250_000)


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _format_acceptance(acc: np.ndarray) -> str:
    if acc.size == 0:
        return "none (one temperature)"
    return " ".join("-" if not np.isfinite(a) else f"{a:.2f}" for a in acc)


def _prepare_force_field(system: openmm.System, settings: TorchMDSettings, device: torch.device,
                         force_field: Any | None) -> tuple[Any, bool]:
    """The force field in kJ/mol and whether it is compiled (``"auto"`` resolved once, see
    :func:`_resolve_compile`)."""
    if force_field is None:
        compiled = _resolve_compile(settings.compile, device, settings, TorchForceField)
        return TorchForceField(system, temperature=None, compile=compiled), compiled
    if getattr(force_field, "kT", None) is not None:
        raise ValueError("force_field must give energies in kJ/mol (build it with temperature=None)")
    compiled = force_field.compile if force_field.compile != "auto" else \
        _resolve_compile("auto", device, settings, force_field)
    force_field.compile = compiled
    return force_field, compiled


def _run_identity(settings: TorchMDSettings, system: openmm.System, positions: np.ndarray,
                  masses: np.ndarray, device: torch.device, compiled: bool) -> str:
    """Hash of everything that determines the trajectory; a checkpoint with another is ignored."""
    return config_hash({
        "settings": settings.trajectory_dict(),
        "system": hashlib.sha256(openmm.XmlSerializer.serialize(system).encode()).hexdigest(),
        "positions": hashlib.sha256(np.ascontiguousarray(positions).tobytes()).hexdigest(),
        "masses": hashlib.sha256(masses.tobytes()).hexdigest(),
        "device": device.type, "compiled": bool(compiled),
    })


def _load_checkpoint(ck_path: Path, identity: str, log: logging.Logger) -> dict[str, Any] | None:
    """The checkpoint's state if it is readable and made by this run's settings, else None."""
    if not ck_path.exists():
        return None
    state = None
    try:
        state = torch.load(ck_path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        log.warning("checkpoint %s is unreadable (%s); starting from scratch", ck_path, err)
    if state is not None and state.get("identity") != identity:
        log.warning("checkpoint %s was made with other settings; starting from scratch", ck_path)
        state = None
    return state


def _save_checkpoint(ck_folder: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to a temporary file and move it into place, so a kill leaves the old one."""
    ck_folder.mkdir(parents=True, exist_ok=True)
    tmp = ck_folder / f".{CHECKPOINT_NAME}.{os.getpid()}.part"
    try:
        torch.save(state, tmp)
        os.replace(tmp, ck_folder / CHECKPOINT_NAME)
    finally:
        if tmp.exists():
            tmp.unlink()


def _next_stop(step: int, total: int, settings: TorchMDSettings, x_steps: int | None,
               max_steps: int | None) -> int:
    """The next step at which the loop must do something: checkpoint, check, exchange, save, stop."""
    def next_multiple(step: int, every: int) -> int:
        return (step // every + 1) * every

    eq_steps, spf = settings.equilibration_steps, settings.steps_per_frame
    stops = [total, next_multiple(step, settings.checkpoint_steps), next_multiple(step, _CHECK_STEPS)]
    if x_steps is not None:
        stops.append(next_multiple(step, x_steps))
    stops.append(eq_steps if step < eq_steps else eq_steps + next_multiple(step - eq_steps, spf))
    if max_steps is not None:
        stops.append(max_steps)
    return min(s for s in stops if s > step)


def _output_columns(settings: TorchMDSettings, temps: np.ndarray, replica_offset: int,
                    n_slots: int) -> dict[str, np.ndarray]:
    """The ``replica``, ``time_ps`` (and ``temperature_K``) columns, rows by ladder, slot, time."""
    M, n_frames = settings.n_ladders, settings.n_frames
    time_ps = (np.arange(n_frames, dtype=np.float64) + 1.0) * settings.save_interval_ps
    extra: dict[str, np.ndarray] = {
        "replica": np.repeat(np.arange(replica_offset, replica_offset + M, dtype=np.int32), n_slots * n_frames),
        "time_ps": np.tile(time_ps, M * n_slots),
    }
    if settings.save_all_temperatures:
        extra["temperature_K"] = np.tile(np.repeat(temps, n_frames), M)
    return extra


def _remove_checkpoint(ck_folder: Path) -> None:
    ck_path = ck_folder / CHECKPOINT_NAME
    if ck_path.exists():
        ck_path.unlink()
    try:
        ck_folder.rmdir()
    except OSError:
        pass


def run_parallel_tempering(
    system: openmm.System,
    positions: np.ndarray,
    settings: TorchMDSettings,
    output: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    *,
    target: str,
    topology: app.Topology | None = None,
    log: logging.Logger | None = None,
    metadata: Mapping[str, Any] | None = None,
    force_field: Any | None = None,
    replica_offset: int = 0,
    log_interval_s: float = 60.0,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Run Langevin dynamics / parallel tempering of ``system`` and write the target-temperature
    frames as a sample set to ``output``.

    ``positions`` (nm, ``(n_atoms, 3)``) start every replica. The ``replica`` column numbers the
    ladders from ``replica_offset`` (for runs whose ladders are split over several jobs). ``topology`` gives the hydrogens and
    bonds for hydrogen mass repartitioning (else the System's bonds and masses are used).
    ``force_field`` may be a ready ``TorchForceField`` of ``system`` (kJ/mol units, i.e.
    ``temperature=None``) to reuse its compiled kernels; its own ``compile`` choice is kept,
    except that ``"auto"`` is resolved (and set on it) as described below. By default one is
    built with the ``compile`` setting resolved that way. ``max_steps`` stops the run (as if the job
    had been killed) once that many steps are done in total: nothing is written and the last
    periodic checkpoint is left in place; the summary then has ``finished: False``.

    Returns the summary also stored in the output metadata.

    Parallel tempering
    ------------------
    ``R = M * K`` replicas form ``M`` independent ladders of ``K`` temperatures ``T_0 < ... < T_{K-1}``
    (geometric from the target ``T_0`` to ``T_max`` by default). Replica ``r = m * K + k`` is *slot*
    ``k`` of ladder ``m`` and is always simulated at ``T_k``: configurations travel along the ladder,
    temperatures never move, so the target-temperature samples are simply slot 0 of every ladder.
    Every ``exchange_interval`` steps each ladder attempts swaps between neighbouring slots,
    alternately all pairs ``(0,1), (2,3), ...`` and all pairs ``(1,2), (3,4), ...`` (deterministic
    even/odd scheme, so the swaps of one round are disjoint and done together). A swap of slots
    ``i, j`` is accepted with probability::

        min(1, exp((beta_i - beta_j) (U_i - U_j))),      beta = 1 / kT  (mol/kJ),  U in kJ/mol,

    evaluated in float64 with one uniform draw per pair. On acceptance the two configurations
    exchange slots together with their cached forces and energies, and their velocities are scaled
    by ``sqrt(T_new / T_old)``, which keeps each slot's Maxwell-Boltzmann distribution. Attempts
    and acceptances are counted per ladder and neighbour pair.

    Output
    ------
    All replicas start from the given (minimised) positions with Maxwell-Boltzmann velocities at
    their own slot's temperature. After ``equilibration_ps`` (not saved, exchanges on), every
    ``save_interval_ps`` of production it records slot 0 of every ladder (every slot with
    ``save_all_temperatures``). The output is a sample set written by
    :func:`boltzflow.io.write_sample_set`, shaped like the OpenMM engine's: ``x`` float32 in nm,
    ``energy`` the reduced energy ``U / kT_0`` in float64 (the force field's energy of the stored
    configuration, cast to float64 before dividing), ``replica`` (int32, the ladder index ``m``) and
    ``time_ps`` (float64, production time) columns, rows ordered by replica, then time. With
    ``save_all_temperatures`` a ``temperature_K`` column is added and the rows of one ladder are
    ordered by temperature slot, then time; ``energy`` stays reduced by the *target* temperature.
    The metadata records the engine (``"torch"``), the ladder, swap acceptance per pair, ns/day,
    steps, seed, dtype, device, threads, hydrogen mass and time step.


    -------------------------------
    Every ``checkpoint_interval_ps`` the complete state (positions, velocities, cached forces and
    energies, step counter, frames so far, the random generator's state, swap counters and a hash
    of everything that determines the trajectory) is written with ``torch.save`` to a temporary
    file and moved into place with ``os.replace``; it is read back with
    ``torch.load(weights_only=True)``. A run restarted after being killed continues from the last
    checkpoint; a checkpoint made with other settings (or another system, start structure, device
    type or compilation choice) is ignored with a warning. The random numbers come from one
    ``torch.Generator`` seeded with ``seed``. On the CPU, a resumed run gives bitwise the output of
    an uninterrupted one as long as the number of torch threads, the torch build and the hardware
    are the same (the thread count changes how reductions are split, hence the rounding). On CUDA
    the stream of random numbers differs from the CPU one, and bitwise identity after a restart
    also needs deterministic kernels.

    ``run(a); run(b)`` of :class:`BatchedLangevin` is bitwise ``run(a + b)``: nothing depends on
    how steps are grouped. ``compile="auto"`` is resolved here, once, from the settings (compile
    when the run evaluates at least ``TorchForceField.compile_after`` configurations on the CPU),
    rather than left to the force field's own counter, so that a resumed run uses the same kernels
    as the uninterrupted one.

    A non-finite energy (the simulation blew up) raises :class:`FloatingPointError` naming the step
    and the number of replicas affected; nothing is written then.
    """

    log = log or log_default
    n_atoms = system.getNumParticles()
    D = 3 * n_atoms
    positions = np.asarray(positions, dtype=np.float64)
    if positions.size != D:
        raise ValueError(f"positions have {positions.size} coordinates, the system has {n_atoms} atoms")
    device = resolve_device(settings.device)
    dtype = getattr(torch, settings.dtype)
    temps = settings.ladder()
    M, K, R = settings.n_ladders, settings.n_temperatures, settings.n_replicas
    spf, eq_steps, total = settings.steps_per_frame, settings.equilibration_steps, settings.total_steps
    n_frames = settings.n_frames
    x_steps = settings.exchange_steps if K > 1 else None
    ck_steps = settings.checkpoint_steps
    n_slots = K if settings.save_all_temperatures else 1

    force_field, compiled = _prepare_force_field(system, settings, device, force_field)
    masses = system_masses(system, topology, settings.hydrogen_mass_amu)

    def new_engine() -> BatchedLangevin:
        return BatchedLangevin(
            force_field.energy_and_forces, masses, temps, dim=D, n_ladders=M,
            timestep_fs=settings.timestep_fs, friction_per_ps=settings.friction_per_ps,
            force_dtype=dtype, device=device, seed=settings.seed,
        )

    engine = new_engine()
    identity = _run_identity(settings, system, positions, masses, device, compiled)

    frames_x = torch.empty(n_frames, M, n_slots, D, dtype=torch.float32)
    frames_u = torch.empty(n_frames, M, n_slots, dtype=torch.float64)
    ck_folder = Path(checkpoint_dir)
    ck_path = ck_folder / CHECKPOINT_NAME
    done = 0
    resumed_from = None
    state = _load_checkpoint(ck_path, identity, log)
    if state is not None:
        try:
            engine.load_state_dict(state["engine"])
            done = int(state["frames_done"])
            frames_x[:done] = state["frames_x"]
            frames_u[:done] = state["frames_u"]
            resumed_from = engine.steps_done
            log.info("resuming from checkpoint at step %d/%d (%d/%d frames)", engine.steps_done, total,
                     done, n_frames)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            log.warning("checkpoint %s does not fit this run (%s); starting from scratch", ck_path, err)
            engine, done = new_engine(), 0
    if resumed_from is None:
        engine.set_positions(positions.reshape(D))
        engine.draw_velocities()
        engine.check_finite(0)
        log.info(
            "torch MD on %s (%s forces%s, %d threads): %d ladders x %d temperatures (%s K), dt %g fs, "
            "gamma %g/ps, hydrogen mass %s, %d equilibration + %d production steps, seed %d",
            device, settings.dtype, ", compiled" if compiled else "", torch.get_num_threads(), M, K,
            ", ".join(f"{t:.1f}" for t in temps), settings.timestep_fs, settings.friction_per_ps,
            settings.hydrogen_mass_amu, eq_steps, n_frames * spf, settings.seed,
        )

    dt_ns = settings.timestep_fs * 1e-6
    kT0 = kT_kJ_per_mol(float(temps[0]))
    start_step, start_time = engine.steps_done, time.perf_counter()
    last_log = start_time

    def rates() -> tuple[float, float, float]:
        elapsed = time.perf_counter() - start_time
        steps = engine.steps_done - start_step
        per_replica = steps * dt_ns / (elapsed / 86400.0) if elapsed > 0 and steps > 0 else float("nan")
        eta = (total - engine.steps_done) * elapsed / steps if steps > 0 else float("nan")
        return per_replica * R, per_replica, eta

    def progress() -> None:
        aggregate, per_replica, eta = rates()
        phase = "equilibration" if engine.steps_done <= eq_steps and eq_steps > 0 else "production"
        log.info("%3.0f%% (step %d/%d, %s, %d/%d frames): %.0f ns/day aggregate (%.1f ns/day per replica, "
                 "%d replicas), ETA %s; swap acceptance %s",
                 100.0 * engine.steps_done / total, engine.steps_done, total, phase, done, n_frames,
                 aggregate, per_replica, R, _format_duration(eta), _format_acceptance(engine.swap_acceptance()))

    while engine.steps_done < total:
        step = engine.steps_done
        if max_steps is not None and step >= max_steps:
            log.info("stopping at step %d (max_steps) without writing output", step)
            return {"finished": False, "step": step, "frames_done": done}
        stop = _next_stop(step, total, settings, x_steps, max_steps)
        engine.run(stop - step)
        step = stop
        engine.check_finite(step)
        if x_steps is not None and step % x_steps == 0:
            engine.exchange()
        if step > eq_steps and (step - eq_steps) % spf == 0:
            u = engine.energy.reshape(M, K)[:, :n_slots]
            frames_x[done] = engine.x.reshape(M, K, D)[:, :n_slots].to(torch.float32).cpu()
            frames_u[done] = (u / kT0).cpu()
            done += 1
        if step == eq_steps and eq_steps > 0:
            log.info("equilibration done (%d steps)", eq_steps)
        if step % ck_steps == 0 and step < total:
            _save_checkpoint(ck_folder, {
                "identity": identity, "engine": engine.state_dict(), "frames_done": int(done),
                "frames_x": frames_x[:done].clone(), "frames_u": frames_u[:done].clone(),
            })
            progress()
            last_log = time.perf_counter()
        elif time.perf_counter() - last_log >= log_interval_s:
            progress()
            last_log = time.perf_counter()
    if done != n_frames:  # pragma: no cover - bookkeeping guard
        raise RuntimeError(f"internal error: {done} frames recorded, expected {n_frames}")

    aggregate, per_replica, _ = rates()
    acceptance = engine.swap_acceptance()
    progress()
    # rows: ladder m, then slot, then time
    x_out = frames_x.permute(1, 2, 0, 3).reshape(-1, D).numpy()
    u_out = frames_u.permute(1, 2, 0).reshape(-1).numpy()
    extra = _output_columns(settings, temps, replica_offset, n_slots)
    summary = {
        "engine": "torch",
        "finished": True,
        "temperatures_K": [float(t) for t in temps],
        "n_ladders": M,
        "replica_offset": int(replica_offset),
        "n_temperatures": K,
        "swap_attempts": engine.swap_attempts.sum(0).cpu().tolist(),
        "swap_acceptance": [None if not np.isfinite(a) else float(a) for a in acceptance],
        "ns_per_day": None if not math.isfinite(aggregate) else aggregate,
        "ns_per_day_per_replica": None if not math.isfinite(per_replica) else per_replica,
        "steps": total,
        "frames": int(len(u_out)),
        "seed": settings.seed,
        "dtype": settings.dtype,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "compiled": bool(compiled),
        "hydrogen_mass_amu": settings.hydrogen_mass_amu,
        "timestep_fs": settings.timestep_fs,
        "resumed_from_step": resumed_from,
    }
    meta = {"md": {**settings.trajectory_dict(), "temperature": float(temps[0])}, **summary}
    meta.update(metadata or {})
    write_sample_set(output, x_out, u_out, target=target, units="nm", extra=extra, metadata=meta)
    _remove_checkpoint(ck_folder)
    return summary
