"""Peptide molecular systems built from scratch (no structure files, no downloads)."""

from __future__ import annotations

import math
import os
import random
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, TextIO

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit

__all__ = [
    "PeptideSpec",
    "BuiltSystem",
    "BUILTIN_SYSTEMS",
    "STANDARD_RESIDUES",
    "CAPS",
    "SOLVENTS",
    "NONBONDED_METHODS",
    "parse_sequence",
    "get_spec",
    "forcefield_files",
    "build_peptide",
    "create_system",
    "write_system",
    "load_system",
]

STANDARD_RESIDUES: tuple[str, ...] = (
    "GLY", "ALA", "SER", "CYS", "VAL", "THR", "LEU", "ILE", "MET", "PRO",
    "PHE", "TYR", "TRP", "ASP", "GLU", "ASN", "GLN", "LYS", "ARG", "HIS",
)
CAPS: tuple[str, str] = ("ACE", "NME")
SOLVENTS: tuple[str, ...] = ("vacuum", "amber99_obc", "obc1", "obc2")
NONBONDED_METHODS: tuple[str, ...] = ("NoCutoff", "CutoffNonPeriodic")

# Force-field file that provides each implicit-solvent model (None: no extra file).
_SOLVENT_FILES: dict[str, str | None] = {
    "vacuum": None,
    "amber99_obc": "amber99_obc.xml",
    "obc1": "implicit/obc1.xml",
    "obc2": "implicit/obc2.xml",
}

# Histidine tautomer handed to addHydrogens (epsilon-protonated, the tleap default for "HIS").
_HIS_VARIANT = "HIE"

# Energy-minimisation tolerance (kJ/mol/nm) and the seed that makes addHydrogens reproducible.
_MINIMIZE_TOLERANCE = 1.0
_HYDROGEN_SEED = 20240531


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


def _forcefield_data_dirs() -> list[str]:
    """Folders in which OpenMM looks up force-field files given by relative name."""
    try:  # includes folders registered by plugins such as openmmforcefields
        from openmm.app.forcefield import _getDataDirectories

        dirs = list(_getDataDirectories())
    except Exception:  # pragma: no cover - private helper changed
        dirs = [os.path.join(os.path.dirname(app.__file__), "data")]
    return dirs


def _find_forcefield_file(filename: str) -> str | None:
    """Absolute path of a force-field file as OpenMM would resolve it, or ``None``."""
    if os.path.isabs(filename):
        return filename if os.path.isfile(filename) else None
    for folder in _forcefield_data_dirs():
        candidate = os.path.join(folder, filename)
        if os.path.isfile(candidate):
            return candidate
    return None


@dataclass(frozen=True)
class PeptideSpec:
    """Everything needed to build one peptide system.

    Attributes
    ----------
    name:
        Short identifier, e.g. ``"al2"``.
    sequence:
        Three-letter residue codes joined by ``"-"``, e.g. ``"ACE-ALA-NME"``; the ``ACE``
        (first) and ``NME`` (last) caps are optional. Stored upper-case.
    forcefield:
        OpenMM force-field file name without ``.xml``, e.g. ``"amber99sbildn"``.
    solvent:
        One of :data:`SOLVENTS`.
    temperature:
        Temperature in kelvin (> 0).
    nonbonded:
        ``"NoCutoff"`` or ``"CutoffNonPeriodic"``.
    cutoff_nm:
        Non-bonded cutoff in nm; required if and only if ``nonbonded == "CutoffNonPeriodic"``.

    The spec is validated on construction (``ValueError`` on any inconsistency).

    >>> spec = get_spec("al2")
    >>> spec.sequence, spec.forcefield, spec.solvent, spec.temperature
    ('ACE-ALA-NME', 'amber99sbildn', 'amber99_obc', 300.0)
    """

    name: str
    sequence: str
    forcefield: str
    solvent: str
    temperature: float
    nonbonded: str = "NoCutoff"
    cutoff_nm: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"PeptideSpec.name must be a non-empty string, got {self.name!r}")
        residues = parse_sequence(self.sequence)
        object.__setattr__(self, "sequence", "-".join(residues))

        if self.solvent not in SOLVENTS:
            raise ValueError(
                f"spec {self.name!r}: unknown solvent {self.solvent!r}; choose one of {list(SOLVENTS)}"
            )
        if self.nonbonded not in NONBONDED_METHODS:
            raise ValueError(
                f"spec {self.name!r}: unknown nonbonded method {self.nonbonded!r}; "
                f"choose one of {list(NONBONDED_METHODS)}"
            )
        if self.nonbonded == "CutoffNonPeriodic":
            if self.cutoff_nm is None:
                raise ValueError(f"spec {self.name!r}: nonbonded 'CutoffNonPeriodic' needs cutoff_nm")
            cutoff = float(self.cutoff_nm)
            if not (math.isfinite(cutoff) and cutoff > 0):
                raise ValueError(f"spec {self.name!r}: cutoff_nm must be > 0, got {self.cutoff_nm!r}")
            object.__setattr__(self, "cutoff_nm", cutoff)
        elif self.cutoff_nm is not None:
            raise ValueError(
                f"spec {self.name!r}: cutoff_nm={self.cutoff_nm!r} given but nonbonded is "
                f"{self.nonbonded!r}; a cutoff is only used with 'CutoffNonPeriodic'"
            )

        try:
            temperature = float(self.temperature)
        except (TypeError, ValueError):
            raise ValueError(
                f"spec {self.name!r}: temperature must be a number, got {self.temperature!r}"
            ) from None
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"spec {self.name!r}: temperature must be > 0 K, got {self.temperature!r}")
        object.__setattr__(self, "temperature", temperature)

        if not isinstance(self.forcefield, str) or not self.forcefield:
            raise ValueError(f"spec {self.name!r}: forcefield must be a non-empty string")
        for filename in forcefield_files(self):
            if _find_forcefield_file(filename) is None:
                raise ValueError(
                    f"spec {self.name!r}: force-field file {filename!r} not found in OpenMM's "
                    f"data folders {_forcefield_data_dirs()}"
                )

    @property
    def residues(self) -> list[str]:
        """The residue codes of :attr:`sequence`, caps included."""
        return parse_sequence(self.sequence)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict; ``PeptideSpec(**spec.to_dict()) == spec``."""
        return asdict(self)


def parse_sequence(sequence: str) -> list[str]:
    """Split a ``"-"``-joined sequence of three-letter codes into upper-case codes.

    Raises ``ValueError`` (naming the offending token) for unknown codes, empty tokens, an
    ``ACE`` cap that is not first, an ``NME`` cap that is not last, or no amino acid at all.
    """
    if not isinstance(sequence, str) or not sequence.strip():
        raise ValueError(f"empty peptide sequence {sequence!r}")
    tokens = [token.strip().upper() for token in sequence.split("-")]
    known = set(STANDARD_RESIDUES) | set(CAPS)
    for position, token in enumerate(tokens):
        if not token:
            raise ValueError(f"empty residue code at position {position} in sequence {sequence!r}")
        if token not in known:
            raise ValueError(
                f"unknown residue code {token!r} at position {position} in sequence {sequence!r}; "
                f"allowed: {', '.join(STANDARD_RESIDUES)} and the caps {', '.join(CAPS)}"
            )
        if token == "ACE" and position != 0:
            raise ValueError(
                f"cap 'ACE' must be the first residue, found at position {position} in {sequence!r}"
            )
        if token == "NME" and position != len(tokens) - 1:
            raise ValueError(
                f"cap 'NME' must be the last residue, found at position {position} in {sequence!r}"
            )
    if not any(token in STANDARD_RESIDUES for token in tokens):
        raise ValueError(f"sequence {sequence!r} contains no amino acid")
    return tokens


def get_spec(name: str, **overrides: Any) -> PeptideSpec:
    """Return the spec of a built-in system, or of a custom peptide.

    ``get_spec("al2")`` returns the built-in spec; keyword arguments replace its fields
    (switching a built-in to ``nonbonded="NoCutoff"`` drops its cutoff unless one is given).
    Any other name (e.g. ``"peptide"``) needs at least ``sequence``, ``forcefield``,
    ``solvent`` and ``temperature`` in ``overrides``. Invalid values raise ``ValueError``.
    """
    valid = {f.name for f in fields(PeptideSpec)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown PeptideSpec field(s) {unknown}; valid fields: {sorted(valid)}")
    overrides = {key: value for key, value in overrides.items() if key != "name"} | {"name": name}

    if name in BUILTIN_SYSTEMS:
        base = BUILTIN_SYSTEMS[name]
        if overrides.get("nonbonded") == "NoCutoff" and "cutoff_nm" not in overrides:
            overrides["cutoff_nm"] = None
        return replace(base, **overrides)

    required = ("sequence", "forcefield", "solvent", "temperature")
    if "sequence" not in overrides:
        raise ValueError(
            f"unknown system {name!r}: known built-in systems are {sorted(BUILTIN_SYSTEMS)}; "
            f"for a custom peptide give at least {list(required)}"
        )
    missing = [key for key in required if key not in overrides]
    if missing:
        raise ValueError(f"custom peptide {name!r} is missing field(s) {missing}")
    return PeptideSpec(**overrides)


def forcefield_files(spec: PeptideSpec) -> list[str]:
    """OpenMM force-field files of ``spec``: the force field, then the implicit-solvent file."""
    files = [f"{spec.forcefield}.xml"]
    solvent_file = _SOLVENT_FILES.get(spec.solvent)
    if solvent_file is not None:
        files.append(solvent_file)
    return files


BUILTIN_SYSTEMS: dict[str, PeptideSpec] = {
    "al2": PeptideSpec(
        name="al2", sequence="ACE-ALA-NME", forcefield="amber99sbildn",
        solvent="amber99_obc", temperature=300.0,
    ),
    "al3": PeptideSpec(
        name="al3", sequence="ALA-ALA-ALA", forcefield="amber14-all",
        solvent="obc1", temperature=310.0, nonbonded="CutoffNonPeriodic", cutoff_nm=2.0,
    ),
    "al4": PeptideSpec(
        name="al4", sequence="ACE-ALA-ALA-ALA-NME", forcefield="amber99sbildn",
        solvent="amber99_obc", temperature=300.0,
    ),
}


# --------------------------------------------------------------------------------------------
# Geometry from internal coordinates
# --------------------------------------------------------------------------------------------

# Backbone geometry (Angstrom, degrees), close to the Engh & Huber values.
_N_CA, _CA_C, _C_N, _C_O, _C_OXT = 1.458, 1.525, 1.329, 1.231, 1.250
_ANG_N_CA_C, _ANG_CA_C_N, _ANG_C_N_CA = 111.2, 116.2, 121.7
_ANG_CA_C_O, _ANG_O_C_N, _ANG_CA_C_OXT = 120.1, 122.7, 117.0
_CAP_METHYL = 1.510  # ACE CH3-C
_PHI, _PSI, _OMEGA = -75.0, 145.0, 180.0  # polyproline-II like start

# One internal-coordinate entry: (atom, (a, b, c), |c-atom|, angle(b, c, atom), dihedral(a, b, c, atom)).
_IC = tuple[str, tuple[str, str, str], float, float, float]

# CB for every residue but GLY; the sign of the dihedral gives L chirality at CA.
_CB: _IC = ("CB", ("N", "C", "CA"), 1.530, 110.1, 122.7)

# Side chains, atom by atom, each placed from three atoms placed before it.
_SIDE_CHAINS: dict[str, tuple[_IC, ...]] = {
    "GLY": (),
    "ALA": (_CB,),
    "SER": (_CB, ("OG", ("N", "CA", "CB"), 1.417, 110.8, -60.0)),
    "CYS": (_CB, ("SG", ("N", "CA", "CB"), 1.808, 113.8, -60.0)),
    "VAL": (
        _CB,
        ("CG1", ("N", "CA", "CB"), 1.527, 110.7, 180.0),
        ("CG2", ("N", "CA", "CB"), 1.527, 110.4, -60.0),
    ),
    "THR": (
        _CB,
        ("OG1", ("N", "CA", "CB"), 1.433, 109.2, 60.0),
        ("CG2", ("N", "CA", "CB"), 1.521, 111.1, -60.0),  # chi1 - 120: natural (2S,3R)
    ),
    "LEU": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.530, 116.1, -60.0),
        ("CD1", ("CA", "CB", "CG"), 1.524, 110.3, 180.0),
        ("CD2", ("CA", "CB", "CG"), 1.525, 110.6, 60.0),
    ),
    "ILE": (
        _CB,
        ("CG1", ("N", "CA", "CB"), 1.530, 110.4, -60.0),
        ("CG2", ("N", "CA", "CB"), 1.527, 110.5, 180.0),  # chi1 - 120: natural (2S,3S)
        ("CD1", ("CA", "CB", "CG1"), 1.520, 113.8, 170.0),
    ),
    "MET": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 114.1, -60.0),
        ("SD", ("CA", "CB", "CG"), 1.810, 112.7, 180.0),
        ("CE", ("CB", "CG", "SD"), 1.791, 100.6, 180.0),
    ),
    "PRO": (  # ring N-CA-CB-CG-CD closes back onto N (C-gamma endo pucker)
        _CB,
        ("CG", ("N", "CA", "CB"), 1.495, 104.2, 29.6),
        ("CD", ("CA", "CB", "CG"), 1.507, 105.0, -34.8),
    ),
    "PHE": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.502, 113.9, -60.0),
        ("CD1", ("CA", "CB", "CG"), 1.390, 120.0, 90.0),
        ("CD2", ("CA", "CB", "CG"), 1.390, 120.0, -90.0),
        ("CE1", ("CB", "CG", "CD1"), 1.390, 120.0, 180.0),
        ("CE2", ("CB", "CG", "CD2"), 1.390, 120.0, 180.0),
        ("CZ", ("CG", "CD1", "CE1"), 1.390, 120.0, 0.0),
    ),
    "TYR": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.512, 114.0, -60.0),
        ("CD1", ("CA", "CB", "CG"), 1.390, 120.0, 90.0),
        ("CD2", ("CA", "CB", "CG"), 1.390, 120.0, -90.0),
        ("CE1", ("CB", "CG", "CD1"), 1.390, 120.0, 180.0),
        ("CE2", ("CB", "CG", "CD2"), 1.390, 120.0, 180.0),
        ("CZ", ("CG", "CD1", "CE1"), 1.390, 120.0, 0.0),
        ("OH", ("CD1", "CE1", "CZ"), 1.376, 120.0, 180.0),
    ),
    "TRP": (  # indole: five-ring CG-CD1-NE1-CE2-CD2 fused with six-ring CD2-CE2-CZ2-CH2-CZ3-CE3
        _CB,
        ("CG", ("N", "CA", "CB"), 1.498, 113.6, -60.0),
        ("CD1", ("CA", "CB", "CG"), 1.365, 126.9, 90.0),
        ("CD2", ("CA", "CB", "CG"), 1.433, 126.8, -90.0),
        ("NE1", ("CB", "CG", "CD1"), 1.374, 110.2, 180.0),
        ("CE2", ("CB", "CG", "CD2"), 1.409, 107.2, 180.0),
        ("CE3", ("CB", "CG", "CD2"), 1.398, 133.9, 0.0),
        ("CZ2", ("CG", "CD2", "CE2"), 1.394, 122.4, 180.0),
        ("CZ3", ("CG", "CD2", "CE3"), 1.382, 118.7, 180.0),
        ("CH2", ("CD2", "CE2", "CZ2"), 1.368, 117.5, 0.0),
    ),
    "HIS": (  # imidazole: CG-ND1-CE1-NE2-CD2
        _CB,
        ("CG", ("N", "CA", "CB"), 1.497, 113.7, -60.0),
        ("ND1", ("CA", "CB", "CG"), 1.383, 122.7, 90.0),
        ("CD2", ("CA", "CB", "CG"), 1.360, 131.0, -90.0),
        ("CE1", ("CB", "CG", "ND1"), 1.323, 108.6, 180.0),
        ("NE2", ("CB", "CG", "CD2"), 1.374, 107.0, 180.0),
    ),
    "ASP": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 112.6, -60.0),
        ("OD1", ("CA", "CB", "CG"), 1.250, 118.4, 90.0),
        ("OD2", ("CA", "CB", "CG"), 1.250, 118.4, -90.0),
    ),
    "GLU": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 114.1, -60.0),
        ("CD", ("CA", "CB", "CG"), 1.520, 113.0, 180.0),
        ("OE1", ("CB", "CG", "CD"), 1.250, 118.4, 90.0),
        ("OE2", ("CB", "CG", "CD"), 1.250, 118.4, -90.0),
    ),
    "ASN": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 112.6, -60.0),
        ("OD1", ("CA", "CB", "CG"), 1.231, 120.8, -60.0),
        ("ND2", ("CA", "CB", "CG"), 1.328, 116.4, 120.0),
    ),
    "GLN": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 114.1, -60.0),
        ("CD", ("CA", "CB", "CG"), 1.520, 112.8, 180.0),
        ("OE1", ("CB", "CG", "CD"), 1.231, 120.8, -60.0),
        ("NE2", ("CB", "CG", "CD"), 1.328, 116.4, 120.0),
    ),
    "LYS": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 114.1, -60.0),
        ("CD", ("CA", "CB", "CG"), 1.520, 111.3, 180.0),
        ("CE", ("CB", "CG", "CD"), 1.520, 111.3, 180.0),
        ("NZ", ("CG", "CD", "CE"), 1.489, 111.9, 180.0),
    ),
    "ARG": (
        _CB,
        ("CG", ("N", "CA", "CB"), 1.520, 114.1, -60.0),
        ("CD", ("CA", "CB", "CG"), 1.520, 111.3, 180.0),
        ("NE", ("CB", "CG", "CD"), 1.460, 112.0, 180.0),
        ("CZ", ("CG", "CD", "NE"), 1.329, 124.2, 180.0),
        ("NH1", ("CD", "NE", "CZ"), 1.326, 120.0, 0.0),
        ("NH2", ("CD", "NE", "CZ"), 1.326, 120.0, 180.0),
    ),
}

# Heavy atoms of each residue in AMBER residue-library order (backbone C and O, and OXT on a
# free C terminus, come after the side chain). This fixes the canonical atom order.
_HEAVY_ATOM_ORDER: dict[str, tuple[str, ...]] = {
    "ACE": ("CH3", "C", "O"),
    "NME": ("N", "C"),
    "GLY": ("N", "CA", "C", "O"),
    "ALA": ("N", "CA", "CB", "C", "O"),
    "SER": ("N", "CA", "CB", "OG", "C", "O"),
    "CYS": ("N", "CA", "CB", "SG", "C", "O"),
    "VAL": ("N", "CA", "CB", "CG1", "CG2", "C", "O"),
    "THR": ("N", "CA", "CB", "CG2", "OG1", "C", "O"),
    "LEU": ("N", "CA", "CB", "CG", "CD1", "CD2", "C", "O"),
    "ILE": ("N", "CA", "CB", "CG2", "CG1", "CD1", "C", "O"),
    "MET": ("N", "CA", "CB", "CG", "SD", "CE", "C", "O"),
    "PRO": ("N", "CD", "CG", "CB", "CA", "C", "O"),
    "PHE": ("N", "CA", "CB", "CG", "CD1", "CE1", "CZ", "CE2", "CD2", "C", "O"),
    "TYR": ("N", "CA", "CB", "CG", "CD1", "CE1", "CZ", "OH", "CE2", "CD2", "C", "O"),
    "TRP": ("N", "CA", "CB", "CG", "CD1", "NE1", "CE2", "CZ2", "CH2", "CZ3", "CE3", "CD2", "C", "O"),
    "HIS": ("N", "CA", "CB", "CG", "ND1", "CE1", "NE2", "CD2", "C", "O"),
    "ASP": ("N", "CA", "CB", "CG", "OD1", "OD2", "C", "O"),
    "GLU": ("N", "CA", "CB", "CG", "CD", "OE1", "OE2", "C", "O"),
    "ASN": ("N", "CA", "CB", "CG", "OD1", "ND2", "C", "O"),
    "GLN": ("N", "CA", "CB", "CG", "CD", "OE1", "NE2", "C", "O"),
    "LYS": ("N", "CA", "CB", "CG", "CD", "CE", "NZ", "C", "O"),
    "ARG": ("N", "CA", "CB", "CG", "CD", "NE", "CZ", "NH1", "NH2", "C", "O"),
}

# Residues whose first hydrogen (by name) on the given heavy atom precedes that heavy atom.
_LEADING_HYDROGEN: dict[str, str] = {"ACE": "CH3"}


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle_deg: float,
           dihedral_deg: float) -> np.ndarray:
    """Position d with |cd| = bond, angle(b, c, d) = angle and dihedral(a, b, c, d) = dihedral."""
    angle = math.radians(angle_deg)
    dihedral = math.radians(dihedral_deg)
    bc = c - b
    bc /= np.linalg.norm(bc)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    in_plane = np.cross(normal, bc)
    local = np.array([
        -bond * math.cos(angle),
        bond * math.sin(angle) * math.cos(dihedral),
        bond * math.sin(angle) * math.sin(dihedral),
    ])
    return c + local[0] * bc + local[1] * in_plane + local[2] * normal


def _element_of(atom_name: str) -> app.Element:
    """Element of a heavy atom from its PDB name (first letter: C, N, O or S)."""
    return app.Element.getBySymbol(atom_name[0])


def _heavy_atom_model(residues: list[str]) -> tuple[app.Topology, np.ndarray]:
    """Heavy-atom topology (with standard bonds) and positions in nm for a residue list."""
    has_ace = residues[0] == "ACE"
    has_nme = residues[-1] == "NME"
    amino_acids = residues[int(has_ace): len(residues) - int(has_nme)]
    n_aa = len(amino_acids)

    # Backbone of the amino acids, then side chains and carbonyl oxygens.
    coords: list[dict[str, np.ndarray]] = [dict() for _ in range(n_aa)]
    first = coords[0]
    first["N"] = np.zeros(3)
    first["CA"] = np.array([_N_CA, 0.0, 0.0])
    theta = math.radians(_ANG_N_CA_C)
    first["C"] = first["CA"] + _CA_C * np.array([-math.cos(theta), math.sin(theta), 0.0])
    for k in range(1, n_aa):
        prev, cur = coords[k - 1], coords[k]
        cur["N"] = _place(prev["N"], prev["CA"], prev["C"], _C_N, _ANG_CA_C_N, _PSI)
        cur["CA"] = _place(prev["CA"], prev["C"], cur["N"], _N_CA, _ANG_C_N_CA, _OMEGA)
        cur["C"] = _place(prev["C"], cur["N"], cur["CA"], _CA_C, _ANG_N_CA_C, _PHI)
    for k, (resname, cur) in enumerate(zip(amino_acids, coords)):
        cur["O"] = _place(cur["N"], cur["CA"], cur["C"], _C_O, _ANG_CA_C_O, _PSI + 180.0)
        if k == n_aa - 1 and not has_nme:
            cur["OXT"] = _place(cur["N"], cur["CA"], cur["C"], _C_OXT, _ANG_CA_C_OXT, _PSI)
        for atom, (a, b, c), bond, angle, dihedral in _SIDE_CHAINS[resname]:
            cur[atom] = _place(cur[a], cur[b], cur[c], bond, angle, dihedral)

    per_residue: list[tuple[str, dict[str, np.ndarray]]] = []
    if has_ace:
        n0 = coords[0]
        ace: dict[str, np.ndarray] = {}
        ace["C"] = _place(n0["C"], n0["CA"], n0["N"], _C_N, _ANG_C_N_CA, _PHI)
        ace["CH3"] = _place(n0["CA"], n0["N"], ace["C"], _CAP_METHYL, _ANG_CA_C_N, _OMEGA)
        ace["O"] = _place(n0["CA"], n0["N"], ace["C"], _C_O, _ANG_O_C_N, 0.0)
        per_residue.append(("ACE", ace))
    per_residue.extend(zip(amino_acids, coords))
    if has_nme:
        last = coords[-1]
        nme: dict[str, np.ndarray] = {}
        nme["N"] = _place(last["N"], last["CA"], last["C"], _C_N, _ANG_CA_C_N, _PSI)
        nme["C"] = _place(last["CA"], last["C"], nme["N"], _N_CA, _ANG_C_N_CA, _OMEGA)
        per_residue.append(("NME", nme))

    topology = app.Topology()
    chain = topology.addChain("A")
    positions: list[np.ndarray] = []
    for number, (resname, atoms) in enumerate(per_residue, start=1):
        residue = topology.addResidue(resname, chain, id=str(number))
        order = list(_HEAVY_ATOM_ORDER[resname])
        if "OXT" in atoms:
            order.append("OXT")
        assert set(order) == set(atoms), (resname, sorted(atoms))
        for atom_name in order:
            topology.addAtom(atom_name, _element_of(atom_name), residue)
            positions.append(atoms[atom_name])
    topology.createStandardBonds()
    return topology, np.asarray(positions, dtype=np.float64) / 10.0


# --------------------------------------------------------------------------------------------
# Topology helpers
# --------------------------------------------------------------------------------------------


def _neighbours(topology: app.Topology) -> dict[int, list[app.topology.Atom]]:
    bonded: dict[int, list[app.topology.Atom]] = {atom.index: [] for atom in topology.atoms()}
    for atom1, atom2 in topology.bonds():
        bonded[atom1.index].append(atom2)
        bonded[atom2.index].append(atom1)
    return bonded


def _is_hydrogen(atom: app.topology.Atom) -> bool:
    return atom.element is not None and atom.element.symbol == "H"


def _canonical_order(topology: app.Topology) -> list[int]:
    """Atom indices of ``topology`` in the canonical order (see the module docstring).

    Residues keep their order; within a residue the heavy atoms keep their order and each is
    followed by its hydrogens sorted by name (ACE: the first methyl hydrogen leads instead).
    Atoms that are neither heavy atoms nor hydrogens bonded to one stay at the residue's end.
    """
    bonded = _neighbours(topology)
    order: list[int] = []
    for residue in topology.residues():
        atoms = list(residue.atoms())
        placed: set[int] = set()
        leading_parent = _LEADING_HYDROGEN.get(residue.name)
        for atom in atoms:
            if _is_hydrogen(atom):
                continue
            hydrogens = sorted(
                (h for h in bonded[atom.index] if _is_hydrogen(h) and h.residue is residue),
                key=lambda h: (h.name, h.index),
            )
            if atom.name == leading_parent and hydrogens:
                block = [hydrogens[0], atom, *hydrogens[1:]]
            else:
                block = [atom, *hydrogens]
            for member in block:
                if member.index not in placed:
                    order.append(member.index)
                    placed.add(member.index)
        order.extend(atom.index for atom in atoms if atom.index not in placed)
    return order


def _reorder(topology: app.Topology, positions: np.ndarray,
             order: list[int]) -> tuple[app.Topology, np.ndarray]:
    """New topology with atoms in ``order`` (a permutation that keeps residues contiguous)."""
    if sorted(order) != list(range(topology.getNumAtoms())):
        raise ValueError("atom order is not a permutation of the topology's atoms")
    old_atoms = list(topology.atoms())
    new_topology = app.Topology()
    new_topology.setPeriodicBoxVectors(topology.getPeriodicBoxVectors())
    chain_map: dict[Any, Any] = {}
    residue_map: dict[Any, Any] = {}
    atom_map: dict[int, Any] = {}
    current = None
    for index in order:
        atom = old_atoms[index]
        residue = atom.residue
        if residue is not current and residue in residue_map:
            raise ValueError(f"atom order splits residue {residue.name}{residue.id}")
        current = residue
        if residue not in residue_map:
            chain = residue.chain
            if chain not in chain_map:
                chain_map[chain] = new_topology.addChain(chain.id)
            residue_map[residue] = new_topology.addResidue(
                residue.name, chain_map[chain], residue.id, residue.insertionCode
            )
        atom_map[index] = new_topology.addAtom(
            atom.name, atom.element, residue_map[residue], atom.id, atom.formalCharge
        )
    new_bonds = []
    for bond in topology.bonds():
        a, b = atom_map[bond.atom1.index], atom_map[bond.atom2.index]
        if a.index > b.index:
            a, b = b, a
        new_bonds.append((a.index, b.index, a, b, bond.type, bond.order))
    for _, _, a, b, bond_type, bond_order in sorted(new_bonds, key=lambda item: item[:2]):
        new_topology.addBond(a, b, bond_type, bond_order)
    return new_topology, np.asarray(positions, dtype=np.float64)[order]


# --------------------------------------------------------------------------------------------
# Systems
# --------------------------------------------------------------------------------------------


@dataclass
class BuiltSystem:
    """A peptide ready for simulation.

    ``positions`` is a float64 array ``(n_atoms, 3)`` in nm (minimised when produced by
    :func:`build_peptide` with ``minimize=True``). ``spec`` is ``None`` only for systems read
    by :func:`load_system` without a spec.

    >>> al2 = build_peptide(get_spec("al2"), minimize=False)
    >>> al2.n_atoms, al2.dim
    (22, 66)
    """

    spec: PeptideSpec | None
    topology: app.Topology
    positions: np.ndarray
    system: openmm.System = field(repr=False)

    @property
    def n_atoms(self) -> int:
        return self.topology.getNumAtoms()

    @property
    def dim(self) -> int:
        return 3 * self.n_atoms


def _reference_platform() -> openmm.Platform:
    return openmm.Platform.getPlatformByName("Reference")


def create_system(spec: PeptideSpec, topology: app.Topology) -> openmm.System:
    """OpenMM ``System`` for ``topology`` from the force field and solvent of ``spec``.

    Flexible bonds (no constraints, flexible water), no hydrogen mass repartitioning and no
    centre-of-mass motion remover. Errors from OpenMM (e.g. a force field and solvent file that
    do not go together, or residues without template) are re-raised as ``ValueError`` naming
    the spec.
    """
    files = forcefield_files(spec)
    kwargs: dict[str, Any] = dict(
        constraints=None, rigidWater=False, removeCMMotion=False, hydrogenMass=None,
    )
    if spec.nonbonded == "CutoffNonPeriodic":
        kwargs["nonbondedMethod"] = app.CutoffNonPeriodic
        kwargs["nonbondedCutoff"] = spec.cutoff_nm * unit.nanometer
    else:
        kwargs["nonbondedMethod"] = app.NoCutoff
    try:
        forcefield = app.ForceField(*files)
        return forcefield.createSystem(topology, **kwargs)
    except Exception as error:
        raise ValueError(
            f"cannot create an OpenMM system for spec {spec.name!r} (sequence {spec.sequence!r}, "
            f"force-field files {files}): {error}"
        ) from error


def _add_hydrogens(topology: app.Topology, positions_nm: np.ndarray) -> tuple[app.Topology, np.ndarray]:
    """Protonate a heavy-atom model with ``Modeller.addHydrogens`` (pH 7, HIS as HIE).

    ``addHydrogens`` starts hydrogens from random offsets; a private, fixed seed makes the
    result reproducible without disturbing the caller's ``random`` state.
    """
    modeller = app.Modeller(topology, positions_nm * unit.nanometer)
    variants = [_HIS_VARIANT if residue.name == "HIS" else None for residue in topology.residues()]
    state = random.getstate()
    try:
        random.seed(_HYDROGEN_SEED)
        modeller.addHydrogens(pH=7.0, variants=variants, platform=_reference_platform())
    finally:
        random.setstate(state)
    positions = np.asarray(modeller.getPositions().value_in_unit(unit.nanometer), dtype=np.float64)
    return modeller.getTopology(), positions


def _minimize(system: openmm.System, positions_nm: np.ndarray,
              tolerance: float = _MINIMIZE_TOLERANCE) -> np.ndarray:
    """Local energy minimum (nm, float64) reached from ``positions_nm`` on the Reference platform."""
    integrator = openmm.VerletIntegrator(0.001)
    context = openmm.Context(system, integrator, _reference_platform())
    try:
        context.setPositions(positions_nm * unit.nanometer)
        openmm.LocalEnergyMinimizer.minimize(context, tolerance, 0)
        state = context.getState(getPositions=True)
        return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    finally:
        del context, integrator


def build_peptide(spec: PeptideSpec, minimize: bool = True) -> BuiltSystem:
    """Build ``spec`` from internal coordinates, protonate, order canonically and minimise.

    A peptide is described by a :class:`PeptideSpec` (sequence, force field, implicit solvent,
    temperature, non-bonded treatment). :func:`build_peptide` turns it into a :class:`BuiltSystem`:

    1. heavy atoms are placed from ideal internal coordinates (bond length, bond angle and
       dihedral relative to three already placed atoms, the "NeRF" construction);
    2. hydrogens are added with :meth:`openmm.app.Modeller.addHydrogens` (pH 7: ASP/GLU
       deprotonated, LYS/ARG protonated, free termini charged; HIS is always the HIE tautomer);
    3. the atoms are put into the canonical order described below;
    4. an :class:`openmm.System` is created from the force field;
    5. the energy is minimised on the Reference platform.

    Conventions
    -----------
    * **Units.** Positions are ``float64`` numpy arrays of shape ``(n_atoms, 3)`` in nanometres.
      Energies reported by OpenMM are in kJ/mol; temperatures in kelvin.
    * **Flexible bonds.** Systems have no constraints (``constraints=None``, ``rigidWater=False``),
      no hydrogen mass repartitioning and no ``CMMotionRemover``: the forces of the system are
      exactly the terms of the potential energy.
    * **Starting geometry.** Every residue starts in a polyproline-II like, extended backbone
      conformation (phi = -75 deg, psi = 145 deg, omega = 180 deg) with staggered side chains; the
      structure returned by :func:`build_peptide` is the local minimum reached from there.
    * **Atom order.** Within a chain, residues come in sequence order. Within a residue the order
      is the AMBER residue-library order: the heavy atoms in the order of the AMBER templates
      (``N, CA, <side chain outwards>, C, O[, OXT]``; proline ``N, CD, CG, CB, CA, C, O``), each
      heavy atom immediately followed by the hydrogens bonded to it, sorted by name. The only
      exception, again inherited from the AMBER library, is the acetyl cap, whose first methyl
      hydrogen precedes the methyl carbon. For alanine dipeptide this is the usual 22-atom order::

    ACE: H1 CH3 H2 H3 C O | ALA: N H CA HA CB HB1 HB2 HB3 C O | NME: N H C H1 H2 H3

      so that phi = atoms (4, 6, 8, 14) and psi = atoms (6, 8, 14, 16).
    * **Names.** Atom names follow OpenMM's conventions (``hydrogens.xml``/``residues.xml``): the
      acetyl cap has ``CH3, C, O, H1-H3``; the N-methyl cap has ``N, H, C, H1-H3``; a free N
      terminus has ``H, H2, H3`` on N; a free C terminus ends with ``OXT``. Residue ids (PDB
      resSeq) are ``1..n_residues`` in a single chain ``A``.
    """
    heavy_topology, heavy_positions = _heavy_atom_model(parse_sequence(spec.sequence))
    topology, positions = _add_hydrogens(heavy_topology, heavy_positions)
    topology, positions = _reorder(topology, positions, _canonical_order(topology))
    system = create_system(spec, topology)
    if system.getNumParticles() != topology.getNumAtoms():  # pragma: no cover - sanity check
        raise RuntimeError("system and topology disagree on the number of atoms")
    if minimize:
        positions = _minimize(system, positions)
    return BuiltSystem(spec=spec, topology=topology, positions=positions, system=system)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _write_atomically(path: str | os.PathLike[str], write: Callable[[TextIO], Any]) -> None:
    """Call ``write(handle)`` on a temporary file next to ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        try:
            os.unlink(handle.name)
        except FileNotFoundError:
            pass
        raise


def write_system(built: BuiltSystem, pdb_path: str | os.PathLike[str],
                 xml_path: str | os.PathLike[str]) -> None:
    """Write the topology and positions as PDB and the ``System`` as OpenMM XML, atomically."""
    positions = np.asarray(built.positions, dtype=np.float64) * unit.nanometer
    _write_atomically(
        pdb_path, lambda handle: app.PDBFile.writeFile(built.topology, positions, handle, keepIds=True)
    )
    xml = openmm.XmlSerializer.serialize(built.system)
    _write_atomically(xml_path, lambda handle: handle.write(xml))


def load_system(pdb_path: str | os.PathLike[str], xml_path: str | os.PathLike[str],
                spec: PeptideSpec | None = None) -> BuiltSystem:
    """Read a system written by :func:`write_system`.

    Positions come from the PDB file (precision 1e-4 nm). Raises ``ValueError`` naming both
    files when the PDB and the XML disagree on the number of atoms, and when ``spec`` is given
    but its sequence does not match the residues of the PDB file.
    """
    pdb = app.PDBFile(str(pdb_path))
    with open(xml_path) as handle:
        system = openmm.XmlSerializer.deserialize(handle.read())
    if not isinstance(system, openmm.System):
        raise ValueError(f"{xml_path} does not hold a serialised openmm.System")
    n_pdb = pdb.topology.getNumAtoms()
    n_xml = system.getNumParticles()
    if n_pdb != n_xml:
        raise ValueError(
            f"atom count mismatch: {pdb_path} has {n_pdb} atoms but the system in {xml_path} "
            f"has {n_xml} particles"
        )
    if spec is not None:
        names = [residue.name for residue in pdb.topology.residues()]
        if names != parse_sequence(spec.sequence):
            raise ValueError(
                f"{pdb_path} (with {xml_path}) has residues {'-'.join(names)}, "
                f"but spec {spec.name!r} has sequence {spec.sequence}"
            )
    positions = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer), dtype=np.float64)
    return BuiltSystem(spec=spec, topology=pdb.topology, positions=positions, system=system)
