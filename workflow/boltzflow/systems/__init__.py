"""Peptide systems and their data: :mod:`~boltzflow.systems.build` makes an OpenMM system from a
sequence spec (force field, caps, solvent model, minimised geometry), :mod:`~boltzflow.systems.userdata`
reads and checks bring-your-own MD frames, and :mod:`~boltzflow.systems.observables` computes the
backbone dihedrals that the MD report, the scores and the figures share.
"""

import lazy_loader

# Names load from their module on first use, so that importing one of them loads only its module.
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs={
    "build": [
        "BUILTIN_SYSTEMS", "CAPS", "NONBONDED_METHODS", "SOLVENTS", "STANDARD_RESIDUES", "BuiltSystem",
        "PeptideSpec", "build_peptide", "create_system", "forcefield_files", "get_spec", "load_system",
        "parse_sequence", "write_system",
    ],
    "observables": ["backbone_dihedrals", "dihedral_atoms"],
    "userdata": ["BOND_WINDOW_NM", "check_bond_lengths", "load_frames"],
})
