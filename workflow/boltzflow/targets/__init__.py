"""Target densities: peptides (torch energies exact to OpenMM) and synthetic benchmarks.

``load_target(name, **overrides)`` is the one entry point; see :mod:`boltzflow.targets.base`
for the contract every target follows.
"""

from __future__ import annotations

from typing import Any

from boltzflow.targets.base import Target, make, registered_names

__all__ = ["Target", "load_target", "target_names"]

_LOADED = False


def _load_modules() -> None:
    # Importing the modules registers their targets.
    global _LOADED
    if not _LOADED:
        from boltzflow.targets import peptide, synthetic  # noqa: F401

        _LOADED = True


def load_target(name: str, **overrides: Any) -> Target:
    """The target called ``name``; ``overrides`` change its parameters (see each target)."""
    _load_modules()
    return make(name, **overrides)


def target_names() -> list[str]:
    _load_modules()
    return registered_names()
