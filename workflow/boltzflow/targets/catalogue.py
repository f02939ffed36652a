"""What is known of each built-in target without building it: its kind and whether it has an
exact sampler.

This module imports neither torch nor OpenMM, so that the workflow can check a config and plan its
jobs (which targets need reference samples, which are peptides) when Snakemake reads the Snakefile,
without paying for either in every ``snakemake`` call. Each name is built by the factory registered
under it in :mod:`boltzflow.targets.registry`, which refuses a name missing from :data:`CATALOGUE`;
``tests/test_targets.py`` holds each ``exact_sampler`` flag to the built target's ``sample``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "CATALOGUE", "CatalogueEntry", "target_names", "target_kind", "names_of_kind",
           "exact_sampler_names"]

#: The kinds of target: a density with no structure the methods use, a translation-invariant
#: particle system (reference samples by parallel tempering), a peptide (reference samples are
#: its MD frames).
KINDS = ("density", "particle", "peptide")


@dataclass(frozen=True)
class CatalogueEntry:
    """One target's facts: its ``kind`` (one of :data:`KINDS`), whether ``sample`` draws exact
    samples, and whether it is a ``template``: a recipe that needs overrides (``"peptide"`` needs a
    sequence) before it names one system."""

    kind: str
    exact_sampler: bool = False
    template: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}; choose one of {KINDS}")


def _entries(names: tuple[str, ...], **facts) -> dict[str, CatalogueEntry]:
    return {name: CatalogueEntry(**facts) for name in names}


#: Every built-in target; :func:`names_of_kind` lists a kind in this order.
CATALOGUE: dict[str, CatalogueEntry] = {
    **_entries(("gmm40", "manywell32", "manywell64", "manywell128", "funnel10"), kind="density", exact_sampler=True),
    **_entries(("lj13", "lj55", "dw4"), kind="particle"),
    **_entries(("checkerboard", "mixture2d_weights", "eight_gaussians", "rings", "gmm4_d16", "gmm4_d32", "gmm4_d64"),
               kind="density", exact_sampler=True),
    **_entries(("al2", "al3", "al4"), kind="peptide"),
    "peptide": CatalogueEntry("peptide", template=True),
}


def target_names() -> list[str]:
    """Every target name (``"peptide"``, the custom-sequence recipe, included), sorted."""
    return sorted(CATALOGUE)


def target_kind(name: str) -> str:
    """``"density"``, ``"particle"`` or ``"peptide"``: the kind of target ``name``.

    >>> target_kind("dw4")
    'particle'
    """
    if name not in CATALOGUE:
        raise KeyError(f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    return CATALOGUE[name].kind


def names_of_kind(kind: str) -> list[str]:
    """The named systems of ``kind`` (not the ``"peptide"`` recipe), in catalogue order.

    >>> names_of_kind("particle")
    ['lj13', 'lj55', 'dw4']
    """
    if kind not in KINDS:
        raise ValueError(f"unknown target kind {kind!r}; choose one of {KINDS}")
    return [name for name, entry in CATALOGUE.items() if entry.kind == kind and not entry.template]


def exact_sampler_names() -> list[str]:
    """Targets whose ``sample`` draws exact samples (the datasets an EBM can learn from), sorted."""
    return sorted(name for name, entry in CATALOGUE.items() if entry.exact_sampler)
