"""Target densities: peptides (torch energies exact to OpenMM) and synthetic benchmarks.

``load_target(name, **overrides)`` is the one entry point; see :mod:`boltzflow.targets.base`
for the contract every target follows.
"""

from __future__ import annotations

from typing import Any

from boltzflow.targets.base import Target, factory_module, make, registered_names

__all__ = ["Target", "load_target", "target_names", "exact_sampler_names"]

_LOADED = False


def _load_modules() -> None:
    # Importing the modules registers their targets.
    global _LOADED
    if not _LOADED:
        from boltzflow.targets import synthetic  # noqa: F401

        try:
            from boltzflow.targets import peptide  # noqa: F401
        except ModuleNotFoundError as err:  # synthetic targets work without OpenMM (e.g. an EBM on a GPU node)
            if err.name not in ("openmm", "mdtraj"):
                raise
            _register_unavailable(("al2", "al3", "al4", "peptide"), err.name)
        _LOADED = True


def _register_unavailable(names: tuple[str, ...], package: str) -> None:
    from boltzflow.targets.base import register

    @register(*names)
    def _unavailable(name: str, **overrides: Any) -> Target:
        raise ModuleNotFoundError(f"target {name!r} needs the package {package}, which is not installed")


def load_target(name: str, **overrides: Any) -> Target:
    """The target called ``name``; ``overrides`` change its parameters (see each target)."""
    _load_modules()
    return make(name, **overrides)


def target_names() -> list[str]:
    _load_modules()
    return registered_names()


def exact_sampler_names() -> list[str]:
    """Synthetic targets whose ``sample`` draws exact samples (the datasets an EBM can learn from)."""
    _load_modules()
    names = []
    for name in registered_names():
        if factory_module(name) != "boltzflow.targets.synthetic":
            continue  # peptides: building one means OpenMM, and none has an exact sampler
        if type(make(name)).sample is not Target.sample:
            names.append(name)
    return names
