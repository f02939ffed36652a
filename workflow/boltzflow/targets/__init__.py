"""Target densities behind one contract: peptides (torch energies exact to OpenMM), particle
systems and synthetic benchmark densities, each registered with its kind.

``load_target(name, **overrides)`` builds a target; :func:`target_kind` and :func:`names_of_kind`
answer which targets are peptides, particle systems or plain densities without building any, and
:func:`exact_sampler_names` which have an exact sampler. See :mod:`boltzflow.targets.base` for the
contract every target follows.
"""

from __future__ import annotations

from typing import Any

from boltzflow.targets.base import KINDS, Target, kind_of, make, registered_names
from boltzflow.targets.base import names_of_kind as _names_of_kind

__all__ = ["Target", "KINDS", "load_target", "target_names", "target_kind", "names_of_kind",
           "exact_sampler_names"]

_LOADED = False

# Built-in peptides; registered as unavailable placeholders when OpenMM is missing, so that their
# kind is known either way.
_PEPTIDE_NAMES = ("al2", "al3", "al4")


def _load_modules() -> None:
    # Importing the modules registers their targets.
    global _LOADED
    if not _LOADED:
        from boltzflow.targets import synthetic  # noqa: F401

        try:
            # peptide targets need OpenMM; synthetic ones must load without it
            from boltzflow.targets import peptide  # noqa: F401
        except ModuleNotFoundError as err:  # synthetic targets work without OpenMM (e.g. an EBM on a GPU node)
            if err.name not in ("openmm", "mdtraj"):
                raise
            _register_unavailable(err.name)
        _LOADED = True


def _register_unavailable(package: str) -> None:
    # the placeholder registered when OpenMM is missing
    from boltzflow.targets.base import register

    def _unavailable(name: str, **overrides: Any) -> Target:
        raise ModuleNotFoundError(f"target {name!r} needs the package {package}, which is not installed")

    register(*_PEPTIDE_NAMES, kind="peptide")(_unavailable)
    register("peptide", kind="peptide", template=True)(_unavailable)


def load_target(name: str, **overrides: Any) -> Target:
    """The target called ``name``; ``overrides`` change its parameters (see each target).

    The peptides ``al2``, ``al3``, ``al4`` and ``peptide`` (``sequence=``, ``forcefield=``,
    ``solvent=``, ``temperature=``) take the fields of a :class:`~boltzflow.systems.PeptideSpec`
    as overrides, plus ``backend``, ``openmm_workers`` and ``compile``. The synthetic targets:

    =====================  ====  ==========================================================
    name                   dim   overrides
    =====================  ====  ==========================================================
    ``gmm40``              2     ``std`` (1.3133)
    ``manywell32/64/128``  D     -
    ``funnel10``           10    ``sigma`` (3.0)
    ``lj13`` / ``lj55``    3n    -
    ``dw4``                8     -
    ``checkerboard``       2     -
    ``mixture2d_weights``  2     ``weights`` ((0.1, 0.2, 0.3, 0.4))
    ``eight_gaussians``    2     ``radius`` (1.0), ``std`` (0.15)
    ``rings``              2     -
    ``gmm4_d16/32/64``     d     ``a`` (0.5919)
    =====================  ====  ==========================================================

    >>> load_target("gmm4_d16", a=1.0).dim
    16
    """
    _load_modules()
    return make(name, **overrides)


def target_names() -> list[str]:
    """Every registered target name (``"peptide"``, the custom-sequence recipe, included), sorted."""
    _load_modules()
    return registered_names()


def target_kind(name: str) -> str:
    """``"density"``, ``"particle"`` or ``"peptide"``: the kind target ``name`` declares."""
    _load_modules()
    return kind_of(name)


def names_of_kind(kind: str) -> list[str]:
    """The named systems of ``kind`` (not the ``"peptide"`` recipe), in registration order.

    >>> names_of_kind("particle")
    ['lj13', 'lj55', 'dw4']
    """
    _load_modules()
    return _names_of_kind(kind)


def exact_sampler_names() -> list[str]:
    """Targets whose ``sample`` draws exact samples (the datasets an EBM can learn from), sorted."""
    _load_modules()
    names = []
    for name in registered_names():
        if kind_of(name) == "peptide":
            continue  # building one means OpenMM, and none has an exact sampler
        if type(make(name)).sample is not Target.sample:
            names.append(name)
    return names
