"""Batched Langevin dynamics with parallel tempering, on a torch potential energy.

This is the second MD engine of the workflow, next to OpenMM (:mod:`boltzflow.md`). Instead of
one trajectory per job it advances many replicas at once as one ``(R, 3N)`` tensor, so that a
single batched force evaluation (:class:`boltzflow.targets.forcefield.TorchForceField`) serves
every replica each step, and it can run them as parallel-tempering ladders.

Integrator
----------
Each step is the BAOAB splitting of Langevin dynamics (the "middle" scheme of OpenMM's
``LangevinMiddleIntegrator``), with friction ``gamma``, time step ``dt`` and per-replica ``kT``::

    B  v <- v + (dt/2) F(x) / m
    A  x <- x + (dt/2) v
    O  v <- c v + sqrt((1 - c^2) kT / m) xi,      c = exp(-gamma dt),  xi ~ N(0, 1)
    A  x <- x + (dt/2) v
    B  v <- v + (dt/2) F(x) / m                  (new forces, kept for the next step's first B)

so there is one force evaluation per step. Units: nm, ps, amu, kJ/mol (kJ/mol/nm / amu is
nm/ps^2). BAOAB samples the configurations of a harmonic mode exactly at any stable ``dt``;
its end-of-step velocities are slightly cold for stiff modes (variance ``kT/m (1 - (omega
dt/2)^2)``): for alanine dipeptide the kinetic temperature reads ~292 K at 1 fs and ~285 K at
2 fs with 3 amu hydrogens (300 K target), while the mean potential energy agrees with 1 fs
without repartitioning within 0.15 kT (its statistical error). Bonds are flexible: no constraints and no centre-of-mass motion removal. Masses come
from the ``System``; optionally hydrogen masses are repartitioned (each hydrogen gets
``hydrogen_mass`` amu, the difference is taken from the heavy atom it is bonded to, so the total
mass is unchanged and the configurational distribution is the same; only the dynamics change).

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

Precision
---------
Positions, velocities and the cached forces and energies are float64 (small arrays, so this
costs little); forces and energies are evaluated in a configurable dtype (float32 by default)
from a copy of the positions in that dtype and cast (exactly) to float64: float32 forces,
float64 accumulation. The swap rule and the output use the float64 cast of the energies. The
Gaussian noise of the O step is drawn in float32 (torch's CPU generator makes float64 normals
about 5x more slowly, and float32 resolution is ample for noise). With ``dtype="float64"`` the
force field runs in float64 too.

What :func:`run_parallel_tempering` saves
-----------------------------------------
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

Checkpoints and reproducibility
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

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

from boltzflow.io import config_hash, write_sample_set
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.units import kT_kJ_per_mol

__all__ = [
    "BatchedLangevin",
    "EnergyAndForces",
    "TorchMDSettings",
    "geometric_ladder",
    "measure_throughput",
    "repartition_hydrogen_mass",
    "run_parallel_tempering",
    "system_masses",
]

log_default = logging.getLogger("boltzflow.torch_md")

#: ``energy_and_forces(x)``: configurations ``(R, D)`` -> energies ``(R,)`` in kJ/mol and forces
#: ``(R, D)`` in kJ/mol/nm.
EnergyAndForces = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

CHECKPOINT_NAME = "torch_md_state.pt"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------------------------
# Masses and temperature ladders
# --------------------------------------------------------------------------------------------


def geometric_ladder(t_min: float, t_max: float, n: int) -> np.ndarray:
    """``n`` temperatures from ``t_min`` to ``t_max`` with a constant ratio (``[t_min]`` if n = 1)."""
    if n == 1:
        return np.array([float(t_min)])
    return float(t_min) * (float(t_max) / float(t_min)) ** (np.arange(n) / (n - 1))


def repartition_hydrogen_mass(
    masses: np.ndarray,
    bonds: Sequence[tuple[int, int]],
    is_hydrogen: np.ndarray,
    hydrogen_mass: float,
) -> np.ndarray:
    """Masses (amu) with every hydrogen set to ``hydrogen_mass``, the difference taken from its
    bonded heavy atom (as OpenMM's ``createSystem(hydrogenMass=...)`` does; unlike recent OpenMM
    versions, water hydrogens are not exempt). Hydrogens bonded to no heavy atom keep their
    mass. The total mass is unchanged."""
    out = np.array(masses, dtype=np.float64, copy=True)
    is_hydrogen = np.asarray(is_hydrogen, dtype=bool)
    for a, b in bonds:
        if is_hydrogen[a] and not is_hydrogen[b]:
            h, heavy = a, b
        elif is_hydrogen[b] and not is_hydrogen[a]:
            h, heavy = b, a
        else:
            continue
        if out[heavy] <= 0:
            continue
        transfer = hydrogen_mass - out[h]
        out[h] = hydrogen_mass
        out[heavy] -= transfer
        if out[heavy] <= 0:
            raise ValueError(
                f"hydrogen_mass_amu={hydrogen_mass} leaves atom {heavy} with mass {out[heavy]:.3f} amu <= 0"
            )
    return out


def system_masses(
    system: openmm.System,
    topology: app.Topology | None = None,
    hydrogen_mass: float | None = None,
) -> np.ndarray:
    """Particle masses (amu, float64, shape ``(n_atoms,)``) of ``system``, with hydrogen mass
    repartitioning when ``hydrogen_mass`` is given.

    Hydrogens and bonds come from ``topology`` when given; otherwise bonds are those of the
    System's ``HarmonicBondForce`` and hydrogens are the particles lighter than 1.5 amu.
    """
    n = system.getNumParticles()
    masses = np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(n)])
    if np.any(masses <= 0):
        raise ValueError(f"particles {np.flatnonzero(masses <= 0).tolist()} have zero mass "
                         f"(virtual sites or fixed atoms are not supported)")
    if hydrogen_mass is None:
        return masses
    if topology is not None:
        if topology.getNumAtoms() != n:
            raise ValueError(f"topology has {topology.getNumAtoms()} atoms, the system {n} particles")
        is_h = np.array([atom.element is not None and atom.element == app.element.hydrogen
                         for atom in topology.atoms()])
        bonds = [(b.atom1.index, b.atom2.index) for b in topology.bonds()]
    else:
        is_h = masses < 1.5
        bonds = []
        for force in system.getForces():
            if isinstance(force, openmm.HarmonicBondForce):
                bonds += [tuple(force.getBondParameters(i)[:2]) for i in range(force.getNumBonds())]
    return repartition_hydrogen_mass(masses, bonds, is_h, float(hydrogen_mass))


# --------------------------------------------------------------------------------------------
# The batched integrator
# --------------------------------------------------------------------------------------------


class BatchedLangevin:
    """BAOAB Langevin dynamics of ``R = n_ladders * K`` replicas, with replica exchange.

    Parameters
    ----------
    energy_and_forces:
        Maps configurations ``(R, D)`` (dtype ``force_dtype``, on ``device``) to energies
        ``(R,)`` in kJ/mol and forces ``(R, D)`` in kJ/mol/nm; e.g.
        ``TorchForceField(system).energy_and_forces`` or an analytic toy potential.
    masses:
        In amu, one per degree of freedom (length ``D``) or one per atom (length ``D / 3``).
    temperatures_K:
        The ``K`` temperatures of a ladder, ``temperatures_K[0]`` the target.
    n_ladders:
        ``M``. Replica ``r = m * K + k`` is slot ``k`` of ladder ``m``, always at
        ``temperatures_K[k]``.
    dim:
        ``D`` (defaults to ``len(masses)``, i.e. masses per degree of freedom; pass it when the
        masses are per atom).
    timestep_fs, friction_per_ps:
        ``dt`` and ``gamma`` (``gamma = 0`` gives velocity Verlet, no thermostat).
    force_dtype:
        The dtype in which positions are handed to ``energy_and_forces`` (float32 or float64).
    device:
        Where every tensor lives (``"cpu"``, ``"cuda"``, ...).
    seed:
        Seeds the ``torch.Generator`` (on ``device``) behind the initial velocities, the Langevin
        noise and the swap decisions.

    State (float64, on ``device``): positions :attr:`x` (nm), velocities :attr:`v` (nm/ps), and
    the forces :attr:`forces` (kJ/mol/nm) and energies :attr:`energy` (kJ/mol) of the current
    positions, as evaluated in ``force_dtype`` and cast to float64. Call :meth:`set_positions`
    (and :meth:`draw_velocities`) before :meth:`run`. ``run(a); run(b)`` is bitwise ``run(a + b)``.
    """

    def __init__(
        self,
        energy_and_forces: EnergyAndForces,
        masses: Sequence[float] | np.ndarray,
        temperatures_K: Sequence[float] | np.ndarray,
        *,
        dim: int | None = None,
        n_ladders: int = 1,
        timestep_fs: float = 2.0,
        friction_per_ps: float = 1.0,
        force_dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        self.energy_and_forces = energy_and_forces
        self.device = torch.device(device)
        self.force_dtype = force_dtype
        f64 = dict(dtype=torch.float64, device=self.device)
        masses = np.asarray(masses, dtype=np.float64).reshape(-1)
        if dim is None:
            dim = masses.size
        if masses.size == dim:
            mass_dof = masses
        elif 3 * masses.size == dim:
            mass_dof = np.repeat(masses, 3)
        else:
            raise ValueError(f"{masses.size} masses do not fit dimension {dim} (need {dim} or {dim // 3})")
        if not np.all(np.isfinite(mass_dof) & (mass_dof > 0)):
            raise ValueError("masses must be finite and > 0")
        temps = np.asarray(temperatures_K, dtype=np.float64).reshape(-1)
        if temps.size < 1 or not np.all(np.isfinite(temps) & (temps > 0)):
            raise ValueError(f"temperatures must be finite and > 0 K, got {temps.tolist()}")
        if int(n_ladders) < 1:
            raise ValueError(f"n_ladders must be >= 1, got {n_ladders}")
        if not (timestep_fs > 0 and friction_per_ps >= 0):
            raise ValueError("timestep_fs must be > 0 and friction_per_ps >= 0")
        self.dim, self.n_ladders, self.n_temperatures = int(dim), int(n_ladders), int(temps.size)
        self.n_replicas = self.n_ladders * self.n_temperatures
        self.temperatures_K = temps
        self.timestep_ps = timestep_fs * 1e-3
        self.friction_per_ps = float(friction_per_ps)
        R, D, K = self.n_replicas, self.dim, self.n_temperatures

        kT_ladder = np.array([kT_kJ_per_mol(t) for t in temps])
        self.kT_ladder = torch.tensor(kT_ladder, **f64)  # (K,)
        self.beta_ladder = 1.0 / self.kT_ladder
        self.kT = self.kT_ladder.repeat(self.n_ladders)  # (R,), slot k of every ladder at kT_k
        self.mass = torch.tensor(mass_dof, **f64)  # (D,)
        dt = self.timestep_ps
        self._half_dt = 0.5 * dt
        self._kick = (0.5 * dt / self.mass).reshape(1, D)  # dt/2 / m
        self._c = math.exp(-self.friction_per_ps * dt)
        # O-step noise amplitude sqrt((1 - c^2) kT / m) per replica and degree of freedom
        self._sigma = torch.sqrt((1.0 - self._c ** 2) * self.kT[:, None] / self.mass[None, :]).contiguous()

        self.x = torch.zeros(R, D, **f64)
        self.v = torch.zeros(R, D, **f64)
        # forces and energies of the current positions, cast (exactly) to float64 once per step:
        # cheaper than mixing float32 into float64 in each of the two kicks
        self.forces = torch.zeros(R, D, **f64)
        self.energy = torch.zeros(R, **f64)
        # float32 noise: torch's CPU generator is ~5x slower for float64 normals (and the random
        # numbers need no more than float32 resolution); it is mixed into float64 velocities
        self._noise = torch.empty(R, D, dtype=torch.float32, device=self.device)
        self._x_eval = self.x if force_dtype == torch.float64 else torch.empty(R, D, dtype=force_dtype,
                                                                              device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self.steps_done = 0
        self.n_exchanges = 0
        self.swap_attempts = torch.zeros(self.n_ladders, max(K - 1, 0), dtype=torch.int64, device=self.device)
        self.swap_accepts = torch.zeros_like(self.swap_attempts)
        # lower slots of the pairs of even and odd exchange rounds, and the identity permutation
        self._pair_lo = [torch.arange(p, max(K - 1, p), 2, device=self.device) for p in (0, 1)]
        self._identity = torch.arange(R, device=self.device).reshape(self.n_ladders, K)
        self._initialised = False

    # ---- state ----

    def set_positions(self, positions: torch.Tensor | np.ndarray) -> None:
        """Positions (nm) for every replica: ``(D,)``, ``(n_atoms, 3)`` or ``(R, D)``; computes forces."""
        pos = torch.as_tensor(np.asarray(positions) if not isinstance(positions, torch.Tensor) else positions)
        pos = pos.to(dtype=torch.float64, device=self.device)
        if pos.numel() == self.dim:
            pos = pos.reshape(1, self.dim)
        if pos.ndim != 2 or pos.shape[1] != self.dim or pos.shape[0] not in (1, self.n_replicas):
            raise ValueError(f"positions of shape {tuple(pos.shape)} do not fit {self.n_replicas} "
                             f"replicas of dimension {self.dim}")
        self.x.copy_(pos.expand(self.n_replicas, self.dim))
        if self._x_eval is not self.x:
            self._x_eval.copy_(self.x)
        energy, forces = self.energy_and_forces(self._x_eval)
        R, D = self.n_replicas, self.dim
        if tuple(energy.shape) != (R,) or tuple(forces.shape) != (R, D):
            raise ValueError(f"energy_and_forces returned shapes {tuple(energy.shape)} and "
                             f"{tuple(forces.shape)}, expected ({R},) and ({R}, {D})")
        self.forces.copy_(forces)
        self.energy.copy_(energy)
        self._initialised = True

    def draw_velocities(self) -> None:
        """Maxwell-Boltzmann velocities at each replica's own temperature (from the generator)."""
        self.v.normal_(0.0, 1.0, generator=self.generator)
        self.v.mul_(torch.sqrt(self.kT[:, None] / self.mass[None, :]))

    def _evaluate(self) -> None:
        if self._x_eval is not self.x:
            self._x_eval.copy_(self.x)
        energy, forces = self.energy_and_forces(self._x_eval)
        self.forces.copy_(forces)
        self.energy.copy_(energy)

    # ---- dynamics ----

    def run(self, n_steps: int) -> None:
        """Advance every replica by ``n_steps`` BAOAB steps (one force evaluation each)."""
        if not self._initialised:
            raise RuntimeError("call set_positions() before run()")
        x, v, f, noise, sigma, kick = self.x, self.v, self.forces, self._noise, self._sigma, self._kick
        half_dt, c, gen = self._half_dt, self._c, self.generator
        for _ in range(int(n_steps)):
            v.addcmul_(f, kick)                          # B
            x.add_(v, alpha=half_dt)                     # A
            noise.normal_(0.0, 1.0, generator=gen)       # O
            v.mul_(c).addcmul_(noise, sigma)
            x.add_(v, alpha=half_dt)                     # A
            self._evaluate()                             # the step's one force evaluation
            v.addcmul_(f, kick)                          # B
        self.steps_done += int(n_steps)

    def exchange(self) -> torch.Tensor:
        """One round of neighbour swaps in every ladder (even pairs, then odd at the next call).

        Returns the accepted mask ``(M, n_pairs)`` of this round.
        """
        M, K = self.n_ladders, self.n_temperatures
        lo = self._pair_lo[self.n_exchanges % 2]
        self.n_exchanges += 1
        if K < 2 or lo.numel() == 0:
            return torch.zeros(M, 0, dtype=torch.bool, device=self.device)
        hi = lo + 1
        u = self.energy.reshape(M, K)
        log_ratio = (self.beta_ladder[lo] - self.beta_ladder[hi]) * (u[:, lo] - u[:, hi])  # (M, P)
        draw = torch.rand(log_ratio.shape, generator=self.generator, dtype=torch.float64, device=self.device)
        accepted = draw < torch.exp(torch.clamp(log_ratio, max=0.0))
        self.swap_attempts[:, lo] += 1
        self.swap_accepts[:, lo] += accepted.to(torch.int64)
        perm = self._identity.clone()
        perm[:, lo] = torch.where(accepted, self._identity[:, hi], self._identity[:, lo])
        perm[:, hi] = torch.where(accepted, self._identity[:, lo], self._identity[:, hi])
        perm = perm.reshape(-1)
        scale = torch.sqrt(self.kT / self.kT[perm])  # T_new / T_old for the configuration arriving
        self.x.copy_(self.x[perm])
        self.v.copy_(self.v[perm] * scale[:, None])
        self.forces.copy_(self.forces[perm])
        self.energy.copy_(self.energy[perm])
        return accepted

    # ---- diagnostics ----

    def kinetic_temperature(self) -> torch.Tensor:
        """Instantaneous kinetic temperature (K) of each replica: sum m v^2 / (D k_B) (slightly
        below the thermostat's for stiff bonds at large time steps; see the module docstring)."""
        return (self.mass * self.v * self.v).sum(1) / (self.dim * kT_kJ_per_mol(1.0))

    def swap_acceptance(self) -> np.ndarray:
        """Acceptance rate of each neighbour pair ``(k, k+1)`` over all ladders (NaN if never tried)."""
        att = self.swap_attempts.sum(0).cpu().numpy()
        acc = self.swap_accepts.sum(0).cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(att > 0, acc / np.maximum(att, 1), np.nan)

    def check_finite(self, step: int | None = None) -> None:
        """Raise :class:`FloatingPointError` if any replica has a non-finite energy."""
        bad = ~torch.isfinite(self.energy)
        if bool(bad.any()):
            n_bad = int(bad.sum())
            at = self.steps_done if step is None else step
            raise FloatingPointError(
                f"non-finite potential energy in {n_bad} of {self.n_replicas} replicas at step {at}: "
                f"the simulation blew up (try a smaller timestep_fs than {self.timestep_ps * 1e3:g}, "
                f"or check the start structure)"
            )

    # ---- checkpointing ----

    def state_dict(self) -> dict[str, Any]:
        """The complete dynamical state as CPU tensors and ints (``torch.save``-able, weights-only)."""
        return {
            "x": self.x.cpu().clone(), "v": self.v.cpu().clone(),
            "forces": self.forces.cpu().clone(), "energy": self.energy.cpu().clone(),
            "generator": self.generator.get_state(),
            "steps_done": int(self.steps_done), "n_exchanges": int(self.n_exchanges),
            "swap_attempts": self.swap_attempts.cpu().clone(), "swap_accepts": self.swap_accepts.cpu().clone(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name in ("x", "v", "forces", "energy", "swap_attempts", "swap_accepts"):
            target = getattr(self, name)
            value = state[name]
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"checkpoint {name} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
            target.copy_(value.to(target.device))
        self.generator.set_state(state["generator"])
        self.steps_done = int(state["steps_done"])
        self.n_exchanges = int(state["n_exchanges"])
        self._initialised = True


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass(frozen=True)
class TorchMDSettings:
    """Settings of a torch MD / parallel-tempering run (see the module docstring).

    ``n_temperatures = 1`` is plain Langevin dynamics of ``n_ladders`` independent replicas.
    With more, the ladder is ``temperatures_K`` if given (it must start at ``temperature_K`` and
    increase), else geometric from ``temperature_K`` to ``max_temperature_K``.
    """

    temperature_K: float = 300.0
    timestep_fs: float = 2.0
    friction_per_ps: float = 1.0
    hydrogen_mass_amu: float | None = 3.0
    n_ladders: int = 64
    n_temperatures: int = 1
    max_temperature_K: float | None = None
    temperatures_K: tuple[float, ...] | None = None
    exchange_interval_ps: float = 1.0
    equilibration_ps: float = 100.0
    length_ps: float = 1000.0
    save_interval_ps: float = 1.0
    checkpoint_interval_ps: float = 100.0
    seed: int = 0
    dtype: str = "float32"
    device: str = "auto"
    compile: bool | str = "auto"
    save_all_temperatures: bool = False

    @classmethod
    def from_config(cls, md: Mapping[str, Any]) -> "TorchMDSettings":
        """Settings from a config mapping; keys that are not fields are ignored."""
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in md.items() if k in fields})

    def __post_init__(self) -> None:
        if self.temperatures_K is not None and not isinstance(self.temperatures_K, tuple):
            if isinstance(self.temperatures_K, (str, bytes)) or not hasattr(self.temperatures_K, "__iter__"):
                raise ValueError(f"temperatures_K must be a list of temperatures, got {self.temperatures_K!r}")
            object.__setattr__(self, "temperatures_K", tuple(self.temperatures_K))
        for name in ("temperature_K", "timestep_fs", "length_ps", "save_interval_ps", "checkpoint_interval_ps"):
            _positive(name, getattr(self, name))
        _positive("friction_per_ps", self.friction_per_ps, allow_zero=True)
        _positive("equilibration_ps", self.equilibration_ps, allow_zero=True)
        if self.hydrogen_mass_amu is not None:
            _positive("hydrogen_mass_amu", self.hydrogen_mass_amu)
        for name in ("n_ladders", "n_temperatures"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not isinstance(self.device, str) or not (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if not (isinstance(self.compile, bool) or self.compile == "auto"):
            raise ValueError(f"compile must be true, false or 'auto', got {self.compile!r}")
        if not isinstance(self.save_all_temperatures, bool):
            raise ValueError(f"save_all_temperatures must be true or false, got {self.save_all_temperatures!r}")
        self.ladder()  # validates the ladder fields
        self.steps_per_frame  # noqa: B018 - validates save_interval_ps
        if self.n_temperatures > 1:
            self.exchange_steps  # noqa: B018 - validates exchange_interval_ps
        if self.n_frames < 1:
            raise ValueError(f"length_ps={self.length_ps} is shorter than save_interval_ps={self.save_interval_ps}")

    # ---- derived quantities ----

    def ladder(self) -> np.ndarray:
        """The ``n_temperatures`` temperatures (K) of a ladder, the target first."""
        K = self.n_temperatures
        if self.temperatures_K is not None:
            temps = self.temperatures_K
            if len(temps) != K:
                raise ValueError(f"temperatures_K has {len(temps)} entries but n_temperatures is {K}")
            for t in temps:
                _positive("temperatures_K", t)
            if abs(temps[0] - self.temperature_K) > 1e-9 * self.temperature_K:
                raise ValueError(f"temperatures_K must start at temperature_K={self.temperature_K}, got {temps[0]}")
            if any(b <= a for a, b in zip(temps, temps[1:])):
                raise ValueError(f"temperatures_K must increase strictly, got {list(temps)}")
            return np.array(temps, dtype=np.float64)
        if K == 1:
            return np.array([float(self.temperature_K)])
        if self.max_temperature_K is None:
            raise ValueError(f"max_temperature_K (or temperatures_K) is required with n_temperatures={K}")
        _positive("max_temperature_K", self.max_temperature_K)
        if self.max_temperature_K <= self.temperature_K:
            raise ValueError(f"max_temperature_K={self.max_temperature_K} must exceed "
                             f"temperature_K={self.temperature_K}")
        return geometric_ladder(self.temperature_K, self.max_temperature_K, K)

    def _whole_steps(self, name: str) -> int:
        ps = getattr(self, name)
        steps = int(round(ps * 1000.0 / self.timestep_fs))
        if steps < 1 or abs(steps * self.timestep_fs - ps * 1000.0) > 1e-6:
            raise ValueError(f"{name}={ps} is not a whole number of time steps of {self.timestep_fs} fs")
        return steps

    @property
    def steps_per_frame(self) -> int:
        return self._whole_steps("save_interval_ps")

    @property
    def exchange_steps(self) -> int:
        return self._whole_steps("exchange_interval_ps")

    @property
    def checkpoint_steps(self) -> int:
        return max(1, int(round(self.checkpoint_interval_ps * 1000.0 / self.timestep_fs)))

    @property
    def equilibration_steps(self) -> int:
        return int(round(self.equilibration_ps * 1000.0 / self.timestep_fs))

    @property
    def n_frames(self) -> int:
        """Frames per saved slot (per ladder at the target temperature)."""
        return int(round(self.length_ps / self.save_interval_ps))

    @property
    def total_steps(self) -> int:
        return self.equilibration_steps + self.n_frames * self.steps_per_frame

    @property
    def n_replicas(self) -> int:
        return self.n_ladders * self.n_temperatures

    def trajectory_dict(self) -> dict[str, Any]:
        """The settings that determine the trajectory (not where it runs or how often it checkpoints)."""
        d = asdict(self)
        for key in ("checkpoint_interval_ps", "device", "compile"):
            d.pop(key)
        d["temperatures_K"] = [float(t) for t in self.ladder()]
        return d


# --------------------------------------------------------------------------------------------
# Throughput
# --------------------------------------------------------------------------------------------


def measure_throughput(
    system: openmm.System,
    positions: np.ndarray,
    n_replicas: int,
    *,
    steps: int = 200,
    warmup: int = 20,
    timestep_fs: float = 2.0,
    hydrogen_mass_amu: float | None = 3.0,
    dtype: str = "float32",
    device: str = "cpu",
    force_field: Any | None = None,
    topology: app.Topology | None = None,
) -> dict[str, float]:
    """Steps/s and ns/day of ``n_replicas`` Langevin replicas of ``system`` (after ``warmup``
    steps, which also absorb a ``torch.compile`` of ``force_field``). Uses the caller's torch
    thread count. ``force_field`` defaults to an eager ``TorchForceField``; pass one built with
    ``compile=True`` to measure compiled kernels (it can be shared between calls)."""

    if force_field is None:
        force_field = TorchForceField(system, compile=False)
    engine = BatchedLangevin(
        force_field.energy_and_forces, system_masses(system, topology, hydrogen_mass_amu), [300.0],
        dim=3 * system.getNumParticles(), n_ladders=n_replicas, timestep_fs=timestep_fs,
        force_dtype=_DTYPES[dtype], device=resolve_device(device), seed=0,
    )
    engine.set_positions(np.asarray(positions, dtype=np.float64).reshape(-1))
    engine.draw_velocities()
    engine.run(warmup)
    engine.check_finite()
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)
    start = time.perf_counter()
    engine.run(steps)
    engine.check_finite()  # also waits for an asynchronous device
    elapsed = time.perf_counter() - start
    steps_per_s = steps / elapsed
    per_replica = steps_per_s * timestep_fs * 1e-6 * 86400.0
    return {"n_replicas": n_replicas, "steps_per_s": steps_per_s,
            "evaluations_per_s": steps_per_s * n_replicas, "ns_per_day_per_replica": per_replica,
            "ns_per_day": per_replica * n_replicas, "timestep_fs": timestep_fs,
            "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------



def _resolve_compile(setting: bool | str, device: torch.device, settings: TorchMDSettings, ff: Any) -> bool:
    """Whether to compile the force field, decided once from the settings (see the module docstring)."""
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
    frames as a sample set to ``output`` (see the module docstring for layout and contents).

    ``positions`` (nm, ``(n_atoms, 3)``) start every replica. The ``replica`` column numbers the
    ladders from ``replica_offset`` (for runs whose ladders are split over several jobs). ``topology`` gives the hydrogens and
    bonds for hydrogen mass repartitioning (else the System's bonds and masses are used).
    ``force_field`` may be a ready ``TorchForceField`` of ``system`` (kJ/mol units, i.e.
    ``temperature=None``) to reuse its compiled kernels; its own ``compile`` choice is kept,
    except that ``"auto"`` is resolved (and set on it) as described above. By default one is
    built with the ``compile`` setting resolved that way. ``max_steps`` stops the run (as if the job
    had been killed) once that many steps are done in total: nothing is written and the last
    periodic checkpoint is left in place; the summary then has ``finished: False``.

    Returns the summary also stored in the output metadata.
    """

    log = log or log_default
    n_atoms = system.getNumParticles()
    D = 3 * n_atoms
    positions = np.asarray(positions, dtype=np.float64)
    if positions.size != D:
        raise ValueError(f"positions have {positions.size} coordinates, the system has {n_atoms} atoms")
    device = resolve_device(settings.device)
    dtype = _DTYPES[settings.dtype]
    temps = settings.ladder()
    M, K, R = settings.n_ladders, settings.n_temperatures, settings.n_replicas
    spf, eq_steps, total = settings.steps_per_frame, settings.equilibration_steps, settings.total_steps
    n_frames = settings.n_frames
    x_steps = settings.exchange_steps if K > 1 else None
    ck_steps = settings.checkpoint_steps
    check_steps = 200  # look for a blow-up at least this often
    n_slots = K if settings.save_all_temperatures else 1

    if force_field is None:
        compiled = _resolve_compile(settings.compile, device, settings, TorchForceField)
        force_field = TorchForceField(system, temperature=None, compile=compiled)
    else:
        if getattr(force_field, "kT", None) is not None:
            raise ValueError("force_field must give energies in kJ/mol (build it with temperature=None)")
        compiled = force_field.compile if force_field.compile != "auto" else \
            _resolve_compile("auto", device, settings, force_field)
        force_field.compile = compiled
    masses = system_masses(system, topology, settings.hydrogen_mass_amu)

    def new_engine() -> BatchedLangevin:
        return BatchedLangevin(
            force_field.energy_and_forces, masses, temps, dim=D, n_ladders=M,
            timestep_fs=settings.timestep_fs, friction_per_ps=settings.friction_per_ps,
            force_dtype=dtype, device=device, seed=settings.seed,
        )

    engine = new_engine()
    identity = config_hash({
        "settings": settings.trajectory_dict(),
        "system": hashlib.sha256(openmm.XmlSerializer.serialize(system).encode()).hexdigest(),
        "positions": hashlib.sha256(np.ascontiguousarray(positions).tobytes()).hexdigest(),
        "masses": hashlib.sha256(masses.tobytes()).hexdigest(),
        "device": device.type, "compiled": bool(compiled),
    })

    frames_x = torch.empty(n_frames, M, n_slots, D, dtype=torch.float32)
    frames_u = torch.empty(n_frames, M, n_slots, dtype=torch.float64)
    ck_folder = Path(checkpoint_dir)
    ck_path = ck_folder / CHECKPOINT_NAME
    done = 0
    resumed_from = None
    if ck_path.exists():
        state = None
        try:
            state = torch.load(ck_path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or foreign file
            log.warning("checkpoint %s is unreadable (%s); starting from scratch", ck_path, err)
        if state is not None and state.get("identity") != identity:
            log.warning("checkpoint %s was made with other settings; starting from scratch", ck_path)
            state = None
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

    def save_checkpoint() -> None:
        state = {
            "identity": identity, "engine": engine.state_dict(), "frames_done": int(done),
            "frames_x": frames_x[:done].clone(), "frames_u": frames_u[:done].clone(),
        }
        ck_folder.mkdir(parents=True, exist_ok=True)
        tmp = ck_folder / f".{CHECKPOINT_NAME}.{os.getpid()}.part"
        try:
            torch.save(state, tmp)
            os.replace(tmp, ck_path)
        finally:
            if tmp.exists():
                tmp.unlink()

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

    def next_multiple(step: int, every: int) -> int:
        return (step // every + 1) * every

    while engine.steps_done < total:
        step = engine.steps_done
        if max_steps is not None and step >= max_steps:
            log.info("stopping at step %d (max_steps) without writing output", step)
            return {"finished": False, "step": step, "frames_done": done}
        stops = [total, next_multiple(step, ck_steps), next_multiple(step, check_steps)]
        if x_steps is not None:
            stops.append(next_multiple(step, x_steps))
        stops.append(eq_steps if step < eq_steps else eq_steps + next_multiple(step - eq_steps, spf))
        if max_steps is not None:
            stops.append(max_steps)
        stop = min(s for s in stops if s > step)
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
            save_checkpoint()
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
    time_ps = (np.arange(n_frames, dtype=np.float64) + 1.0) * settings.save_interval_ps
    extra: dict[str, np.ndarray] = {
        "replica": np.repeat(np.arange(replica_offset, replica_offset + M, dtype=np.int32), n_slots * n_frames),
        "time_ps": np.tile(time_ps, M * n_slots),
    }
    if settings.save_all_temperatures:
        extra["temperature_K"] = np.tile(np.repeat(temps, n_frames), M)
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
    if ck_path.exists():
        ck_path.unlink()
    try:
        ck_folder.rmdir()
    except OSError:
        pass
    return summary
