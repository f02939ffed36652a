"""Peptide targets: the Boltzmann density of a peptide at its temperature, in Cartesian nm, built
from a sequence spec with :mod:`boltzflow.systems` (``load_target("al2")``, ``al3``, ``al4``, or
``load_target("peptide", sequence=..., ...)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from boltzflow.systems import BuiltSystem, build_peptide, get_spec
from boltzflow.targets.base import Target
from boltzflow.targets.forcefield import TorchForceField
from boltzflow.targets.openmm_pool import OpenMMPool, openmm_energy

__all__ = ["PeptideTarget", "FACTORIES"]

BACKENDS = ("torch", "openmm")


class PeptideTarget(Target):
    """Reduced energy of a built peptide system: the Boltzmann density of a peptide at its
    temperature, in Cartesian nm.

    ``load_target("al2")`` (also ``al3``, ``al4``) and ``load_target("peptide", sequence=...,
    forcefield=..., solvent=..., temperature=...)`` build the system with
    :mod:`boltzflow.systems` and return a :class:`PeptideTarget`. Its energy is the reduced
    potential energy ``u(x) = E(x) / kT`` of flattened coordinates ``(B, 3 * n_atoms)`` in nm.

    ``backend="torch"`` (default) evaluates it with :class:`~boltzflow.targets.forcefield.TorchForceField`
    (batched, differentiable, CPU or GPU, exact to OpenMM); ``backend="openmm"`` with a pool of
    OpenMM Contexts (the reference, and the fallback for force fields the torch path refuses).
    ``openmm_workers`` sets that pool's size; ``compile`` (``"auto"``, ``True``, ``False``) is passed
    to the torch force field. Other overrides change the system spec (e.g. ``temperature=350``).

    The density has no normaliser in closed form (``log_z = None``) and no exact sampler: equilibrium
    data come from the MD stage.

    >>> target = PeptideTarget(build_peptide(get_spec("al2")), backend="openmm")
    >>> target.dim, target.log_z, target.energy(torch.as_tensor(target.positions).reshape(1, -1)).shape
    (66, None, torch.Size([1]))
    """

    def __init__(self, built: BuiltSystem, backend: str = "torch", openmm_workers: int = 1,
                 compile: bool | str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
        self.built = built
        self.spec = built.spec
        self.name = built.spec.name
        self.backend = backend
        self.openmm_system = built.system
        self.topology = built.topology
        self.positions = np.asarray(built.positions, dtype=np.float64)  # (n_atoms, 3) nm, minimised
        self.temperature = float(built.spec.temperature)
        self.n_atoms = built.n_atoms
        self.dim = 3 * built.n_atoms
        self.log_z = None
        if backend == "torch":
            self.forcefield = TorchForceField(built.system, self.temperature, compile=compile)
            self.pool = None
        else:
            self.forcefield = None
            self.pool = OpenMMPool(built.system, self.temperature, workers=openmm_workers)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        if self.forcefield is not None:
            return self.forcefield(x)
        return openmm_energy(x, self.pool)

    def energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_shape(x)
        if self.forcefield is not None:
            return self.forcefield.energy_and_forces(x)
        energy, forces = self.pool(x.detach().cpu().to(torch.float64).numpy(), forces=True)
        as_x = {"device": x.device, "dtype": x.dtype}
        return torch.from_numpy(energy).to(**as_x), torch.from_numpy(forces).to(**as_x)


def _peptide(name: str, backend: str = "torch", openmm_workers: int = 1, compile: bool | str = "auto",
             **overrides: Any) -> PeptideTarget:
    spec = get_spec(name, **overrides)
    return PeptideTarget(build_peptide(spec), backend=backend, openmm_workers=openmm_workers, compile=compile)


#: The factory of each peptide target name ("peptide": a custom sequence, given as an override).
FACTORIES = dict.fromkeys(("al2", "al3", "al4", "peptide"), _peptide)
