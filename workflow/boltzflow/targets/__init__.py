"""Target densities behind one contract: peptides (torch energies exact to OpenMM), particle
systems and synthetic benchmark densities.

``load_target(name, **overrides)`` builds a target (:mod:`~boltzflow.targets.registry`);
:func:`target_kind`, :func:`names_of_kind` and :func:`exact_sampler_names` answer which targets
are peptides, particle systems or plain densities, and which have an exact sampler, from the
catalogue (:mod:`~boltzflow.targets.catalogue`), without torch or OpenMM. See
:mod:`boltzflow.targets.base` for the contract every target follows.
"""

import lazy_loader

# Names load from their module on first use: the catalogue's answers need neither torch nor OpenMM.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "base": ["Target"],
    "catalogue": ["KINDS", "exact_sampler_names", "names_of_kind", "target_kind", "target_names"],
    "registry": ["load_target"],
})
