"""Building a target by name: the factory of each name of the catalogue
(:mod:`boltzflow.targets.catalogue`), from the synthetic and the peptide targets' modules."""

from __future__ import annotations

from typing import Any, Callable

from boltzflow.targets import synthetic
from boltzflow.targets.base import Target
from boltzflow.targets.catalogue import names_of_kind, target_names

__all__ = ["FACTORIES", "registered_names", "load_target"]


def _unavailable(package: str) -> Callable[..., Target]:
    # The placeholder of a peptide when OpenMM is missing: loading one says what to install.
    def factory(name: str, **overrides: Any) -> Target:
        raise ModuleNotFoundError(f"target {name!r} needs the package {package}, which is not installed")

    return factory


try:
    from boltzflow.targets import peptide

    _PEPTIDE_FACTORIES = peptide.FACTORIES
except ModuleNotFoundError as err:  # synthetic targets work without OpenMM (e.g. an EBM on a GPU node)
    if err.name not in ("openmm", "mdtraj"):
        raise
    _PEPTIDE_FACTORIES = dict.fromkeys((*names_of_kind("peptide"), "peptide"), _unavailable(err.name))

#: The factory ``f(name, **overrides) -> Target`` of every catalogued name (a test holds the two
#: lists equal).
FACTORIES: dict[str, Callable[..., Target]] = {**synthetic.FACTORIES, **_PEPTIDE_FACTORIES}


def registered_names() -> list[str]:
    """Every name with a factory, sorted."""
    return sorted(FACTORIES)


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
    if name not in FACTORIES:
        raise KeyError(f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    return FACTORIES[name](name, **overrides)
