"""Equilibrium data by molecular dynamics with OpenMM, the reference engine of the MD stage.

One replica is one independent Langevin trajectory, run as its own job so replicas spread over
cores or cluster nodes (:func:`run_replica`); :func:`gather_replicas` joins them into one sample
set, and :func:`torch_md_settings` maps the same config section onto the torch engine.
Energies are reduced, ``u = E / (k_B T)`` in float64.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import openmm
import openmm.unit as unit

from boltzflow.io import atomic_path, config_hash, read_sample_set, write_sample_set
from boltzflow.md.settings import replica_seed
from boltzflow.units import kT_kJ_per_mol

__all__ = [
    "MDSettings",
    "available_platforms",
    "choose_platform",
    "gather_replicas",
    "make_context",
    "measure_ns_per_day",
    "reduced_energies",
    "run_replica",
]

log = logging.getLogger("boltzflow.md")




@dataclass(frozen=True)
class MDSettings:
    """Settings of one MD replica (the ``md`` section of the config, minus data-source keys)."""

    timestep_fs: float = 1.0
    friction_per_ps: float = 1.0
    equilibration_ps: float = 100.0
    length_ps: float = 5000.0
    save_interval_ps: float = 1.0
    checkpoint_interval_ps: float = 500.0
    platform: str = "auto"
    seed: int = 0

    @classmethod
    def from_config(cls, md: Mapping[str, Any]) -> "MDSettings":
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in md.items() if k in fields})

    def _steps(self, ps: float) -> int:
        return int(round(ps * 1000.0 / self.timestep_fs))

    @property
    def steps_per_frame(self) -> int:
        steps = self._steps(self.save_interval_ps)
        if steps < 1 or abs(steps * self.timestep_fs - self.save_interval_ps * 1000.0) > 1e-6:
            raise ValueError(
                f"save_interval_ps={self.save_interval_ps} is not a whole number of "
                f"time steps of {self.timestep_fs} fs"
            )
        return steps

    @property
    def n_frames(self) -> int:
        return int(round(self.length_ps / self.save_interval_ps))

    @property
    def equilibration_steps(self) -> int:
        return self._steps(self.equilibration_ps)

    @property
    def frames_per_checkpoint(self) -> int:
        return max(1, int(round(self.checkpoint_interval_ps / self.save_interval_ps)))

    def trajectory_dict(self) -> dict[str, Any]:
        """The settings that determine the trajectory (the platform only picks the engine)."""
        d = asdict(self)
        d.pop("platform")
        d.pop("checkpoint_interval_ps")
        return d


def available_platforms() -> list[str]:
    return [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())]


def _platform(name: str, threads: int) -> tuple[openmm.Platform, dict[str, str]]:
    platform = openmm.Platform.getPlatformByName(name)
    properties: dict[str, str] = {}
    if name == "CPU":
        properties["Threads"] = str(max(1, threads))
    elif name in ("CUDA", "OpenCL"):
        properties["Precision"] = "mixed"
    return platform, properties


def make_context(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    settings: MDSettings,
    platform_name: str,
    threads: int = 1,
    seed: int = 1,
) -> tuple[openmm.Context, openmm.LangevinMiddleIntegrator]:
    """A Langevin context at ``temperature`` with velocities drawn from ``seed``."""
    integrator = openmm.LangevinMiddleIntegrator(
        temperature * unit.kelvin,
        settings.friction_per_ps / unit.picosecond,
        settings.timestep_fs * unit.femtoseconds,
    )
    integrator.setRandomNumberSeed(seed)
    platform, properties = _platform(platform_name, threads)
    context = openmm.Context(system, integrator, platform, properties)
    context.setPositions(np.asarray(positions, dtype=np.float64) * unit.nanometer)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, seed)
    return context, integrator


def measure_ns_per_day(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    settings: MDSettings,
    platform_name: str,
    threads: int = 1,
    steps: int = 500,
) -> float:
    """Simulated ns per wall-clock day of one context on ``platform_name`` (after a warm-up)."""
    context, integrator = make_context(system, positions, temperature, settings, platform_name, threads)
    try:
        integrator.step(max(10, steps // 10))
        context.getState(getEnergy=True)
        start = time.perf_counter()
        integrator.step(steps)
        context.getState(getEnergy=True)  # forces completion on asynchronous platforms
        elapsed = time.perf_counter() - start
    finally:
        del context, integrator
    return steps * settings.timestep_fs * 1e-6 / (elapsed / 86400.0)


def choose_platform(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    settings: MDSettings,
    threads: int = 1,
) -> tuple[str, dict[str, float]]:
    """The platform to run on, and the ns/day measured for each candidate (empty if none).

    Platform: CUDA when present. On CPU, per-step overhead dominates for systems of a few dozen
    atoms, so OpenMM's single-threaded Reference platform is usually much faster than its CPU
    platform; ``platform: auto`` measures both at the start of the job and takes the faster.
    """
    available = available_platforms()
    if settings.platform != "auto":
        if settings.platform not in available:
            raise RuntimeError(
                f"OpenMM platform {settings.platform!r} is not available here "
                f"(available: {available}); set md.platform to one of them or to 'auto'"
            )
        return settings.platform, {}
    if "CUDA" in available:
        return "CUDA", {}
    measured = {
        name: measure_ns_per_day(system, positions, temperature, settings, name, threads)
        for name in ("Reference", "CPU")
        if name in available
    }
    best = max(measured, key=measured.get)
    return best, measured


def reduced_energies(
    system: openmm.System, temperature: float, xyz: np.ndarray, platform_name: str = "Reference"
) -> np.ndarray:
    """Reduced potential energies (kT, float64) of frames ``xyz`` with shape (N, n_atoms, 3) in nm."""
    xyz = np.asarray(xyz, dtype=np.float64)
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform_name))
    beta = 1.0 / kT_kJ_per_mol(temperature)
    out = np.empty(len(xyz), dtype=np.float64)
    for i, frame in enumerate(xyz):
        context.setPositions(frame)
        energy = context.getState(getEnergy=True).getPotentialEnergy()
        out[i] = energy.value_in_unit(unit.kilojoule_per_mole) * beta
    return out


class _Checkpoint:
    """Progress of one replica on disk: OpenMM state, frames so far, and a small JSON index.

    The JSON index is written last (atomically) and names the generation of the state and frame
    files it belongs to, so whatever moment a job is killed at, the index points at a complete,
    consistent pair.
    """

    def __init__(self, folder: Path, identity: str):
        self.folder = folder
        self.identity = identity
        self.index = folder / "progress.json"

    def load(self) -> dict[str, Any] | None:
        if not self.index.exists():
            return None
        try:
            info = json.loads(self.index.read_text())
        except json.JSONDecodeError:
            log.warning("checkpoint index %s is unreadable; starting from scratch", self.index)
            return None
        if info.get("identity") != self.identity:
            log.warning(
                "checkpoint in %s was made with other settings; starting from scratch", self.folder
            )
            return None
        gen = info["generation"]
        state, frames = self.folder / f"state.{gen}.chk", self.folder / f"frames.{gen}.npz"
        if not (state.exists() and frames.exists()):
            log.warning("checkpoint files of generation %s missing; starting from scratch", gen)
            return None
        with np.load(frames) as data:
            info["x"], info["energy"] = data["x"], data["energy"]
        info["state"] = state.read_bytes()
        return info

    def save(self, generation: int, context: openmm.Context, x: np.ndarray, energy: np.ndarray, **info: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / f"state.{generation}.chk") as tmp:
            tmp.write_bytes(context.createCheckpoint())
        with atomic_path(self.folder / f"frames.{generation}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, x=x, energy=energy)
        record = {"identity": self.identity, "generation": generation, **info}
        with atomic_path(self.index) as tmp:
            tmp.write_text(json.dumps(record))
        for old in self.folder.glob("*.*"):
            parts = old.name.split(".")
            if len(parts) == 3 and parts[1].isdigit() and int(parts[1]) != generation:
                old.unlink()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def run_replica(
    system: openmm.System,
    positions: np.ndarray,
    temperature: float,
    settings: MDSettings,
    replica: int,
    output: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    *,
    target: str,
    threads: int = 1,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Simulate one replica and write its frames as a sample set to ``output``.

    Returns a summary (platform, ns/day, frames). Progress and ns/day go to the
    ``boltzflow.md`` logger at every checkpoint.

    One replica is one independent Langevin trajectory (``LangevinMiddleIntegrator``, flexible
    bonds, the system temperature), run as its own job so replicas spread over cores or cluster
    nodes. :func:`run_replica` equilibrates, then saves a frame every ``save_interval_ps``; it writes
    an OpenMM checkpoint every ``checkpoint_interval_ps``, and when re-run after being killed it
    resumes from the last one. On the Reference platform the resumed trajectory is bitwise the one
    an uninterrupted run gives (the checkpoint holds the integrator's random state).
    """
    n_atoms = system.getNumParticles()
    spf = settings.steps_per_frame
    n_frames = settings.n_frames
    per_ckpt = settings.frames_per_checkpoint
    seed = replica_seed(settings.seed, replica)
    identity = config_hash(
        {"settings": settings.trajectory_dict(), "replica": replica, "n_atoms": n_atoms,
         "temperature": temperature, "system": openmm.XmlSerializer.serialize(system)}
    )
    checkpoint = _Checkpoint(Path(checkpoint_dir), identity)
    resumed = checkpoint.load()
    if resumed is not None and resumed["platform"] not in available_platforms():
        # OpenMM checkpoints only load on the platform that wrote them (e.g. a CUDA checkpoint
        # resubmitted to a CPU-only node).
        log.warning("checkpoint was written on the %s platform, which is not available here; "
                    "starting from scratch", resumed["platform"])
        resumed = None

    x = np.empty((n_frames, n_atoms * 3), dtype=np.float32)
    energy = np.empty(n_frames, dtype=np.float64)
    if resumed is not None:
        platform_name, measured = resumed["platform"], resumed.get("measured", {})
    else:
        platform_name, measured = choose_platform(system, positions, temperature, settings, threads)
        if measured:
            log.info(
                "platform measured (ns/day): %s -> using %s",
                ", ".join(f"{k} {v:,.0f}" for k, v in measured.items()), platform_name,
            )
    context, integrator = make_context(system, positions, temperature, settings, platform_name, threads, seed)
    beta = 1.0 / kT_kJ_per_mol(temperature)

    eq_done, done, generation = 0, 0, 0
    if resumed is not None:
        try:
            context.loadCheckpoint(resumed["state"])
        except Exception as err:  # OpenMM raises a generic exception for a bad checkpoint
            log.warning("checkpoint state in %s cannot be loaded (%s); starting from scratch",
                        checkpoint_dir, err)
            resumed = None
    if resumed is not None:
        eq_done, done, generation = resumed["eq_steps_done"], resumed["frames_done"], resumed["generation"]
        x[:done], energy[:done] = resumed["x"], resumed["energy"]
        log.info("replica %d: resuming from checkpoint (equilibration %d/%d steps, %d/%d frames)",
                 replica, eq_done, settings.equilibration_steps, done, n_frames)
    else:
        log.info("replica %d: %s platform, seed %d, %d equilibration steps, %d frames every %d steps",
                 replica, platform_name, seed, settings.equilibration_steps, n_frames, spf)

    def save_checkpoint() -> None:
        nonlocal generation
        generation += 1
        checkpoint.save(generation, context, x[:done], energy[:done], platform=platform_name,
                        measured=measured, eq_steps_done=eq_done, frames_done=done)

    chunk = per_ckpt * spf
    while eq_done < settings.equilibration_steps:
        steps = min(chunk, settings.equilibration_steps - eq_done)
        integrator.step(steps)
        eq_done += steps
        save_checkpoint()
        log.info("replica %d: equilibration %d/%d steps", replica, eq_done, settings.equilibration_steps)

    start, start_frames = time.perf_counter(), done
    while done < n_frames:
        integrator.step(spf)
        state = context.getState(getPositions=True, getEnergy=True)
        x[done] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer).reshape(-1)
        energy[done] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) * beta
        if not np.isfinite(energy[done]):
            raise FloatingPointError(
                f"replica {replica}: non-finite energy at frame {done}; the simulation blew up "
                f"(try a smaller md.timestep_fs than {settings.timestep_fs})"
            )
        done += 1
        if done % per_ckpt == 0 or done == n_frames:
            save_checkpoint()
            elapsed = time.perf_counter() - start
            ns = (done - start_frames) * settings.save_interval_ps * 1e-3
            rate = ns / (elapsed / 86400.0) if elapsed > 0 else float("nan")
            eta = (n_frames - done) * settings.save_interval_ps * 1e-3 / rate * 86400.0 if rate > 0 else 0.0
            log.info("replica %d: %d/%d frames (%.0f%%), %.0f ns/day, ETA %.0f s",
                     replica, done, n_frames, 100.0 * done / n_frames, rate, eta)
    elapsed = time.perf_counter() - start
    produced_ns = (done - start_frames) * settings.save_interval_ps * 1e-3
    ns_per_day = produced_ns / (elapsed / 86400.0) if elapsed > 0 and produced_ns > 0 else None

    time_ps = (np.arange(n_frames, dtype=np.float64) + 1.0) * settings.save_interval_ps
    summary = {"replica": replica, "platform": platform_name, "platform_ns_per_day": measured,
               "ns_per_day": ns_per_day, "frames": n_frames, "seed": seed}
    meta = {"md": {**settings.trajectory_dict(), "temperature": temperature}, **summary}
    meta.update(metadata or {})
    write_sample_set(
        output, x, energy, target=target, units="nm",
        extra={"replica": np.full(n_frames, replica, dtype=np.int32), "time_ps": time_ps},
        metadata=meta,
    )
    checkpoint.remove()
    return summary


def gather_replicas(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    target: str,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Concatenate replica sample sets (in the order given) into one; returns the row count."""
    sets = [read_sample_set(p, expected_target=target) for p in inputs]
    dims = {s.dim for s in sets}
    if len(dims) != 1:
        raise ValueError(f"replica files disagree on dimension: { {str(p): s.dim for p, s in zip(inputs, sets)} }")
    x = np.concatenate([s.x for s in sets])
    energy = np.concatenate([s.energy for s in sets])
    replica = np.concatenate([s.columns["replica"].to_numpy(np.int32) for s in sets])
    time_ps = np.concatenate([s.columns["time_ps"].to_numpy(np.float64) for s in sets])
    meta = dict(metadata or {})
    keys = ("engine", "replica", "replica_offset", "n_ladders", "platform", "device", "ns_per_day", "seed",
            "frames", "temperatures_K", "swap_acceptance", "timestep_fs", "hydrogen_mass_amu")
    meta["parts"] = [{k: s.metadata[k] for k in keys if k in s.metadata} for s in sets]
    meta["md"] = sets[0].metadata.get("md")
    write_sample_set(output, x, energy, target=target, units="nm",
                     extra={"replica": replica, "time_ps": time_ps}, metadata=meta)
    return len(x)
