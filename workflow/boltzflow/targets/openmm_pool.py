"""Energies and forces from OpenMM, the reference implementation behind the torch force field: a
pool of reused Contexts (:class:`OpenMMPool`) and an autograd wrapper around it
(:func:`openmm_energy`).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openmm
import openmm.unit as unit
import torch

from boltzflow.units import kT_kJ_per_mol

__all__ = ["OpenMMPool", "openmm_energy"]

_KJ = unit.kilojoule_per_mole
_KJ_NM = unit.kilojoule_per_mole / unit.nanometer


class OpenMMPool:
    """A pool of OpenMM Contexts evaluating batches of configurations.

    :class:`OpenMMPool` keeps one OpenMM ``Context`` per worker and reuses it for every
    configuration (building a Context costs far more than an energy call). Workers are threads:
    OpenMM's Python wrapper releases the GIL while it computes, so threads run in parallel without
    the hazards of forking a process that holds OpenMM state. :func:`openmm_energy` wraps the pool in
    an autograd function, so an OpenMM-backed target is differentiable like the torch one (the
    backward pass uses OpenMM's forces).

    Units: positions in nm; energies in kT when a temperature is given (else kJ/mol); forces in
    kT/nm (else kJ/mol/nm). Everything is float64.

    ``platform``: OpenMM platform name (``Reference`` is the fastest for small peptides on
    CPU and is exact in double precision); ``workers``: number of Contexts/threads.

    >>> from boltzflow.systems import build_peptide, get_spec
    >>> built = build_peptide(get_spec("al2"))
    >>> energy, forces = OpenMMPool(built.system, 300.0)(built.positions.reshape(1, -1), forces=True)
    >>> energy.shape, forces.shape
    ((1,), (1, 66))
    """

    def __init__(self, system: openmm.System, temperature: float | None = None,
                 platform: str = "Reference", workers: int = 1, threads_per_context: int = 1):
        self.n_atoms = system.getNumParticles()
        self.platform = platform
        self.workers = max(1, int(workers))
        self.scale = 1.0 / kT_kJ_per_mol(temperature) if temperature is not None else 1.0
        xml = openmm.XmlSerializer.serialize(system)
        properties = {"Threads": str(threads_per_context)} if platform == "CPU" else {}
        self._contexts = []
        for _ in range(self.workers):
            copy = openmm.XmlSerializer.deserialize(xml)
            context = openmm.Context(copy, openmm.VerletIntegrator(0.001),
                                     openmm.Platform.getPlatformByName(platform), properties)
            self._contexts.append((context, threading.Lock()))
        self._executor = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def _evaluate(self, worker: int, xyz: np.ndarray, forces: bool) -> tuple[np.ndarray, np.ndarray | None]:
        context, lock = self._contexts[worker]
        energy = np.full(len(xyz), np.nan)
        force = np.full(xyz.shape, np.nan) if forces else None
        with lock:
            for i, frame in enumerate(xyz):
                if not np.isfinite(frame).all():
                    continue  # stays NaN: a bad row must not stop the batch
                context.setPositions(frame)
                state = context.getState(getEnergy=True, getForces=forces)
                energy[i] = state.getPotentialEnergy().value_in_unit(_KJ)
                if forces:
                    force[i] = state.getForces(asNumpy=True).value_in_unit(_KJ_NM)
        return energy, force

    def __call__(self, x: np.ndarray, forces: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Energies ``(B,)`` and, if asked, forces ``(B, 3N)`` of flat configurations ``(B, 3N)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3 * self.n_atoms:
            raise ValueError(f"expected shape (B, {3 * self.n_atoms}), got {x.shape}")
        xyz = x.reshape(len(x), self.n_atoms, 3)
        if self._executor is None or len(x) < 2 * self.workers:
            energy, force = self._evaluate(0, xyz, forces)
        else:
            chunks = np.array_split(np.arange(len(x)), self.workers)
            results = list(self._executor.map(lambda w: self._evaluate(w, xyz[chunks[w]], forces),
                                              range(self.workers)))
            energy = np.concatenate([e for e, _ in results])
            force = np.concatenate([f for _, f in results]) if forces else None
        energy = energy * self.scale
        if forces:
            force = force.reshape(len(x), -1) * self.scale
        return energy, force

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        self._contexts.clear()


class _OpenMMEnergy(torch.autograd.Function):
    """Energy from OpenMM in the forward pass; its forces give the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pool: OpenMMPool) -> torch.Tensor:
        energy, forces = pool(x.detach().cpu().to(torch.float64).numpy(), forces=True)
        ctx.save_for_backward(torch.from_numpy(forces).to(device=x.device, dtype=x.dtype))
        return torch.from_numpy(energy).to(device=x.device, dtype=x.dtype)

    @staticmethod
    def backward(ctx, grad_energy: torch.Tensor):
        (forces,) = ctx.saved_tensors
        return -grad_energy[:, None] * forces, None


def openmm_energy(x: torch.Tensor, pool: OpenMMPool) -> torch.Tensor:
    """Differentiable energies ``(B,)`` of ``x`` ``(B, 3N)`` computed by ``pool``."""
    return _OpenMMEnergy.apply(x, pool)
