"""systems."""

from boltzflow.systems.build import (  # noqa: F401
    BUILTIN_SYSTEMS,
    CAPS,
    NONBONDED_METHODS,
    SOLVENTS,
    STANDARD_RESIDUES,
    BuiltSystem,
    PeptideSpec,
    build_peptide,
    create_system,
    forcefield_files,
    get_spec,
    load_system,
    parse_sequence,
    write_system,
)
from boltzflow.systems.observables import (  # noqa: F401
    backbone_dihedrals,
    dihedral_atoms,
)
from boltzflow.systems.userdata import (  # noqa: F401
    BOND_WINDOW_NM,
    check_bond_lengths,
    load_frames,
)

__all__ = [
    "STANDARD_RESIDUES",
    "CAPS",
    "SOLVENTS",
    "NONBONDED_METHODS",
    "PeptideSpec",
    "parse_sequence",
    "get_spec",
    "forcefield_files",
    "BUILTIN_SYSTEMS",
    "BuiltSystem",
    "create_system",
    "build_peptide",
    "write_system",
    "load_system",
    "BOND_WINDOW_NM",
    "check_bond_lengths",
    "load_frames",
    "dihedral_atoms",
    "backbone_dihedrals",
]
