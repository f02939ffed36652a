"""Batched Langevin dynamics on a torch potential energy: masses and the BAOAB integrator.

This is the second MD engine of the workflow, next to OpenMM (:mod:`boltzflow.md.openmm`). Instead
of one trajectory per job it advances many replicas at once as one ``(R, 3N)`` tensor, so that a
single batched force evaluation (:class:`boltzflow.targets.forcefield.TorchForceField`) serves
every replica each step; :mod:`boltzflow.md.tempering` runs them as parallel-tempering ladders.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import torch

from boltzflow.mcmc.tempering import neighbour_swap
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.units import kT_kJ_per_mol, resolve_device

__all__ = [
    "BatchedLangevin",
    "EnergyAndForces",
    "measure_throughput",
    "repartition_hydrogen_mass",
    "system_masses",
]

#: ``energy_and_forces(x)``: configurations ``(R, D)`` -> energies ``(R,)`` in kJ/mol and forces
#: ``(R, D)`` in kJ/mol/nm.
EnergyAndForces = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


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

    Precision
    ---------
    Positions, velocities and the cached forces and energies are float64 (small arrays, so this
    costs little); forces and energies are evaluated in a configurable dtype (float32 by default)
    from a copy of the positions in that dtype and cast (exactly) to float64: float32 forces,
    float64 accumulation. The swap rule and the output use the float64 cast of the energies. The
    Gaussian noise of the O step is drawn in float32 (torch's CPU generator makes float64 normals
    about 5x more slowly, and float32 resolution is ample for noise). With ``dtype="float64"`` the
    force field runs in float64 too.

    Example: plain Langevin dynamics of two replicas of a harmonic oscillator.

    >>> import torch
    >>> harmonic = lambda x: (0.5 * (x * x).sum(1), -x)
    >>> engine = BatchedLangevin(harmonic, [1.0, 1.0], [300.0], n_ladders=2, seed=0)
    >>> engine.set_positions(torch.zeros(2))
    >>> engine.draw_velocities()
    >>> engine.run(10)
    >>> tuple(engine.x.shape)
    (2, 2)
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
        accepted, slots = neighbour_swap(self.energy.reshape(M, K), self.beta_ladder, lo, self.generator)
        self.swap_attempts[:, lo] += 1
        self.swap_accepts[:, lo] += accepted.to(torch.int64)
        perm = self._identity[:, :1] + slots  # slot k of ladder m is replica m * K + k
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
        force_dtype=getattr(torch, dtype), device=resolve_device(device), seed=0,
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

