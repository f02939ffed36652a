"""Physical units and the compute device: the molar gas constant, k_B T in kJ/mol, and the one
rule that turns a config's ``device`` string into a checked ``torch.device``.

Energies in boltzflow are reduced (units of k_B T) unless a column says otherwise; the constant
here is the one every conversion uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["MOLAR_GAS_CONSTANT", "kT_kJ_per_mol", "resolve_device"]

#: R in kJ/(mol K): OpenMM's value (CODATA 2018), so that torch and OpenMM energies agree to the last
#: digit; a test holds it equal to ``openmm.unit.MOLAR_GAS_CONSTANT_R``. Written out so that units
#: loads without OpenMM.
MOLAR_GAS_CONSTANT = 8.31446261815324e-3


def kT_kJ_per_mol(temperature: float) -> float:
    """k_B T in kJ/mol at ``temperature`` kelvin.

    >>> round(kT_kJ_per_mol(300.0), 4)
    2.4943
    """
    return MOLAR_GAS_CONSTANT * temperature


def resolve_device(name: str, key: str = "device") -> torch.device:
    """``cpu``, ``cuda`` (``cuda:N``) or ``auto`` (CUDA when torch sees a GPU, else the CPU).

    A CUDA device that torch cannot see is a ``ValueError`` naming the config ``key`` it came from.
    """
    import torch  # here, not at the top: the OpenMM-only jobs import units and never need torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}: {name!r} requested, but torch sees no CUDA device here")
    return device
