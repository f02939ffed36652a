"""Tests of boltzflow.systems: building, checking and saving peptide systems."""

from __future__ import annotations

import json
import os
import random
from collections import deque

import mdtraj as md
import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest
from boltzflow.systems import (
    BUILTIN_SYSTEMS,
    CAPS,
    SOLVENTS,
    STANDARD_RESIDUES,
    BuiltSystem,
    PeptideSpec,
    build_peptide,
    create_system,
    dihedral_atoms,
    forcefield_files,
    get_spec,
    load_system,
    parse_sequence,
    write_system,
)

ALL_20 = "ACE-GLY-ALA-SER-CYS-VAL-THR-LEU-ILE-MET-PRO-PHE-TYR-TRP-ASP-GLU-ASN-GLN-LYS-ARG-HIS-NME"

AL2_ORDER = [
    ("ACE", "H1"), ("ACE", "CH3"), ("ACE", "H2"), ("ACE", "H3"), ("ACE", "C"), ("ACE", "O"),
    ("ALA", "N"), ("ALA", "H"), ("ALA", "CA"), ("ALA", "HA"), ("ALA", "CB"),
    ("ALA", "HB1"), ("ALA", "HB2"), ("ALA", "HB3"), ("ALA", "C"), ("ALA", "O"),
    ("NME", "N"), ("NME", "H"), ("NME", "C"), ("NME", "H1"), ("NME", "H2"), ("NME", "H3"),
]


# ---------------------------------------------------------------------------------------------
# helpers and fixtures
# ---------------------------------------------------------------------------------------------


def energy(system: openmm.System, positions_nm: np.ndarray) -> float:
    """Potential energy in kJ/mol on the Reference platform."""
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )
    context.setPositions(np.asarray(positions_nm) * unit.nanometer)
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)


def signed_volume(pos: np.ndarray, centre: int, a: int, b: int, c: int) -> float:
    """(a - centre) . ((b - centre) x (c - centre)); > 0 means a->b->c counter-clockwise
    seen with the fourth (lowest-priority) substituent pointing away, i.e. CIP 'S' when
    a > b > c in priority."""
    return float(np.dot(pos[a] - pos[centre], np.cross(pos[b] - pos[centre], pos[c] - pos[centre])))


def chirality_checks(topology: app.Topology, pos: np.ndarray) -> list[tuple[str, float]]:
    """Signed volumes that must be positive for natural L amino acids (and Ile/Thr CB)."""
    checks = []
    for residue in topology.residues():
        idx = {atom.name: atom.index for atom in residue.atoms()}
        label = f"{residue.name}{residue.id}"
        if "CB" in idx and "CA" in idx:  # L: N -> C -> CB counter-clockwise, H away (S except Cys)
            checks.append((label + ":CA", signed_volume(pos, idx["CA"], idx["N"], idx["C"], idx["CB"])))
        if residue.name == "ILE":  # (2S,3S): CA > CG1 > CG2, S
            checks.append((label + ":CB", signed_volume(pos, idx["CB"], idx["CA"], idx["CG1"], idx["CG2"])))
        if residue.name == "THR":  # (2S,3R): OG1 > CA > CG2, R -> negative volume
            checks.append((label + ":CB", -signed_volume(pos, idx["CB"], idx["OG1"], idx["CA"], idx["CG2"])))
    return checks


def graph_distances(topology: app.Topology) -> np.ndarray:
    n = topology.getNumAtoms()
    neighbours: list[list[int]] = [[] for _ in range(n)]
    for a, b in topology.bonds():
        neighbours[a.index].append(b.index)
        neighbours[b.index].append(a.index)
    dist = np.full((n, n), n + 1, dtype=int)
    for start in range(n):
        dist[start, start] = 0
        queue = deque([start])
        while queue:
            i = queue.popleft()
            for j in neighbours[i]:
                if dist[start, j] > dist[start, i] + 1:
                    dist[start, j] = dist[start, i] + 1
                    queue.append(j)
    return dist


@pytest.fixture(scope="module")
def builtins() -> dict[str, BuiltSystem]:
    return {name: build_peptide(get_spec(name)) for name in ("al2", "al3", "al4")}


@pytest.fixture(scope="module")
def all20() -> tuple[BuiltSystem, BuiltSystem]:
    """The 20-residue peptide, unminimised and minimised (vacuum keeps the test fast)."""
    spec = get_spec("peptide", sequence=ALL_20, forcefield="amber14-all", solvent="vacuum", temperature=300.0)
    return build_peptide(spec, minimize=False), build_peptide(spec)


# ---------------------------------------------------------------------------------------------
# built-in systems
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, n_atoms", [("al2", 22), ("al3", 33), ("al4", 42)])
def test_builtin_atom_counts(builtins, name, n_atoms):
    built = builtins[name]
    assert built.n_atoms == n_atoms
    assert built.dim == 3 * n_atoms
    assert built.system.getNumParticles() == n_atoms
    assert built.positions.shape == (n_atoms, 3)
    assert built.positions.dtype == np.float64
    assert built.spec == BUILTIN_SYSTEMS[name]


def test_builtin_specs_table():
    al2, al3, al4 = (BUILTIN_SYSTEMS[n] for n in ("al2", "al3", "al4"))
    assert (al2.sequence, al2.forcefield, al2.solvent, al2.temperature, al2.nonbonded, al2.cutoff_nm) == (
        "ACE-ALA-NME", "amber99sbildn", "amber99_obc", 300.0, "NoCutoff", None)
    assert (al3.sequence, al3.forcefield, al3.solvent, al3.temperature, al3.nonbonded, al3.cutoff_nm) == (
        "ALA-ALA-ALA", "amber14-all", "obc1", 310.0, "CutoffNonPeriodic", 2.0)
    assert (al4.sequence, al4.forcefield, al4.solvent, al4.temperature, al4.nonbonded) == (
        "ACE-ALA-ALA-ALA-NME", "amber99sbildn", "amber99_obc", 300.0, "NoCutoff")
    assert forcefield_files(al2) == ["amber99sbildn.xml", "amber99_obc.xml"]
    assert forcefield_files(al3) == ["amber14-all.xml", "implicit/obc1.xml"]
    assert forcefield_files(get_spec("al3", solvent="obc2")) == ["amber14-all.xml", "implicit/obc2.xml"]
    assert forcefield_files(get_spec("al2", solvent="vacuum")) == ["amber99sbildn.xml"]
    assert len(STANDARD_RESIDUES) == 20 and len(set(STANDARD_RESIDUES)) == 20 and "HIS" in STANDARD_RESIDUES
    assert CAPS == ("ACE", "NME")
    assert SOLVENTS == ("vacuum", "amber99_obc", "obc1", "obc2")


def test_al2_standard_atom_order(builtins):
    topology = builtins["al2"].topology
    assert [(a.residue.name, a.name) for a in topology.atoms()] == AL2_ORDER
    assert [r.id for r in topology.residues()] == ["1", "2", "3"]
    assert [a.element.symbol for a in topology.atoms()] == [
        "H", "C", "H", "H", "C", "O", "N", "H", "C", "H", "C", "H", "H", "H", "C", "O",
        "N", "H", "C", "H", "H", "H"]


def test_al3_termini(builtins):
    topology = builtins["al3"].topology
    names = [(a.residue.name, a.name) for a in topology.atoms()]
    assert names[:4] == [("ALA", "N"), ("ALA", "H"), ("ALA", "H2"), ("ALA", "H3")]
    assert names[-3:] == [("ALA", "C"), ("ALA", "O"), ("ALA", "OXT")]


def test_al2_phi_psi_indices(builtins):
    built = builtins["al2"]
    assert dihedral_atoms(md.Topology.from_openmm(built.topology)) == {
        "phi_ALA2": [4, 6, 8, 14], "psi_ALA2": [6, 8, 14, 16]}


@pytest.mark.parametrize("name, n_phi", [("al3", 2), ("al4", 3)])
def test_every_residue_has_its_backbone_dihedrals(builtins, name, n_phi):
    atoms = dihedral_atoms(md.Topology.from_openmm(builtins[name].topology))
    assert sum(k.startswith("phi_") for k in atoms) == n_phi
    assert sum(k.startswith("psi_") for k in atoms) == n_phi


def _force_names(system: openmm.System) -> list[str]:
    return sorted(force.__class__.__name__ for force in system.getForces())


def test_al2_force_composition(builtins):
    system = builtins["al2"].system
    assert _force_names(system) == sorted([
        "HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce", "GBSAOBCForce"])
    assert system.getNumConstraints() == 0
    (nonbonded,) = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.NoCutoff
    (bonds,) = [f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce)]
    assert bonds.getNumBonds() == 21  # flexible: every bond of the 22-atom tree is a force term


def test_al3_force_composition(builtins):
    system = builtins["al3"].system
    names = _force_names(system)
    assert "CustomGBForce" in names and "GBSAOBCForce" not in names
    assert system.getNumConstraints() == 0
    (nonbonded,) = [f for f in system.getForces() if isinstance(f, openmm.NonbondedForce)]
    assert nonbonded.getNonbondedMethod() == openmm.NonbondedForce.CutoffNonPeriodic
    assert nonbonded.getCutoffDistance().value_in_unit(unit.nanometer) == pytest.approx(2.0)


def test_al4_has_no_constraints_and_obc(builtins):
    system = builtins["al4"].system
    assert system.getNumConstraints() == 0
    assert "GBSAOBCForce" in _force_names(system)


def test_atom_order_matches_amber_templates(builtins, all20):
    """The canonical order reproduces the AMBER residue templates (elements and heavy names)."""
    for built, ff_file in [(builtins["al2"], "amber99sbildn.xml"), (builtins["al3"], "amber14-all.xml"),
                           (all20[1], "amber14-all.xml")]:
        templates = app.ForceField(ff_file).getMatchingTemplates(built.topology)
        for residue, template in zip(built.topology.residues(), templates):
            ours = [a.element.symbol for a in residue.atoms()]
            theirs = [a.element.symbol for a in template.atoms]
            assert ours == theirs, (residue.name, template.name)
            heavy_ours = [a.name for a in residue.atoms() if a.element.symbol != "H"]
            heavy_theirs = [a.name for a in template.atoms if a.element.symbol != "H"]
            if residue.name not in ("NME",):  # OpenMM calls the NME methyl "C", AMBER "CH3"
                assert heavy_ours == heavy_theirs, (residue.name, template.name)
    assert [t.name for t in app.ForceField("amber14-all.xml").getMatchingTemplates(all20[1].topology)][-2] == "HIE"


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------


def _check_bond_lengths(built: BuiltSystem) -> None:
    pos = built.positions
    for a, b in built.topology.bonds():
        length = float(np.linalg.norm(pos[a.index] - pos[b.index]))
        symbols = {a.element.symbol, b.element.symbol}
        if symbols == {"H", "S"}:
            low, high = 0.125, 0.140
        elif "H" in symbols:
            low, high = 0.095, 0.115
        elif "S" in symbols:
            low, high = 0.17, 0.19
        else:
            low, high = 0.12, 0.16
        assert low <= length <= high, (a, b, length)


@pytest.mark.parametrize("name", ["al2", "al3", "al4"])
def test_minimised_builtin_geometry(builtins, name):
    built = builtins[name]
    e = energy(built.system, built.positions)
    assert np.isfinite(e)
    _check_bond_lengths(built)
    assert all(volume > 0 for _, volume in chirality_checks(built.topology, built.positions))
    # minimised: small residual forces
    context = openmm.Context(built.system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(built.positions)
    forces = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
        unit.kilojoule_per_mole / unit.nanometer)
    assert np.sqrt(np.mean(np.sum(forces**2, axis=1))) < 20.0


def test_chirality_check_on_a_real_protein():
    """The chirality test itself gives positive volumes on an experimental structure."""
    pdb = app.PDBFile(os.path.join(os.path.dirname(app.__file__), "data", "test.pdb"))
    pos = pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    checks = chirality_checks(pdb.topology, pos)
    assert any(label.startswith("THR") and label.endswith(":CB") for label, _ in checks)
    assert len(checks) > 30
    assert all(volume > 0 for _, volume in checks)


def test_all_twenty_residues_build_and_minimise(all20):
    raw, built = all20
    assert [r.name for r in built.topology.residues()] == parse_sequence(ALL_20)
    assert built.n_atoms == raw.n_atoms
    e_raw = energy(raw.system, raw.positions)
    e_min = energy(built.system, built.positions)
    assert np.isfinite(e_min) and e_min < e_raw
    assert -30.0 < e_min / built.n_atoms < 5.0  # kJ/mol per atom
    _check_bond_lengths(built)
    checks = chirality_checks(built.topology, built.positions)
    assert len(checks) == 19 + 2  # every non-GLY CA, plus ILE and THR CB
    assert all(volume > 0 for _, volume in checks), [c for c in checks if c[1] <= 0]
    # the same chirality already in the starting structure
    assert all(volume > 0 for _, volume in chirality_checks(raw.topology, raw.positions))
    # standard protonation at pH 7: ASP/GLU -1, LYS/ARG +1, neutral HIS (HIE) and capped ends
    (nonbonded,) = [f for f in built.system.getForces() if isinstance(f, openmm.NonbondedForce)]
    charge = sum(nonbonded.getParticleParameters(i)[0].value_in_unit(unit.elementary_charge)
                 for i in range(built.n_atoms))
    assert charge == pytest.approx(0.0, abs=1e-4)
    his = [r for r in built.topology.residues() if r.name == "HIS"][0]
    assert {"HE2", "HD2", "HE1"} <= {a.name for a in his.atoms()} and "HD1" not in {a.name for a in his.atoms()}


def test_no_clashes(all20):
    raw, built = all20
    dist_graph = graph_distances(built.topology)
    for model, threshold in ((built, 0.15),):
        pos = model.positions
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        far = dist_graph >= 4
        assert d[far].min() > threshold
    # heavy atoms of the starting structure (before any minimisation) are apart too
    heavy = np.array([a.element.symbol != "H" for a in raw.topology.atoms()])
    pos = raw.positions[heavy]
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    far = dist_graph[np.ix_(heavy, heavy)] >= 3
    assert d[far].min() > 0.25


def test_rings_planar_after_minimisation(all20):
    _, built = all20
    rings = {
        "PHE": ["CG", "CD1", "CE1", "CZ", "CE2", "CD2"],
        "TYR": ["CG", "CD1", "CE1", "CZ", "CE2", "CD2"],
        "TRP": ["CG", "CD1", "NE1", "CE2", "CD2", "CE3", "CZ3", "CH2", "CZ2"],
        "HIS": ["CG", "ND1", "CE1", "NE2", "CD2"],
    }
    for residue in built.topology.residues():
        if residue.name in rings:
            idx = {a.name: a.index for a in residue.atoms()}
            xyz = built.positions[[idx[n] for n in rings[residue.name]]]
            centred = xyz - xyz.mean(axis=0)
            out_of_plane = np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(xyz))
            assert out_of_plane < 0.005, (residue.name, out_of_plane)


def test_build_is_deterministic_and_leaves_random_state_alone(builtins):
    random.seed(123)
    expected = random.random()
    random.seed(123)
    again = build_peptide(get_spec("al2"))
    assert random.random() == expected
    np.testing.assert_array_equal(again.positions, builtins["al2"].positions)


def test_unminimised_build(builtins):
    raw = build_peptide(get_spec("al4"), minimize=False)
    assert raw.n_atoms == 42
    assert energy(raw.system, raw.positions) > energy(builtins["al4"].system, builtins["al4"].positions)


def test_create_system_wraps_openmm_errors(builtins):
    spec = get_spec("bad_combo", sequence="ACE-ALA-NME", forcefield="amber14-all", solvent="amber99_obc",
                    temperature=300.0)
    with pytest.raises(ValueError, match="bad_combo"):
        create_system(spec, builtins["al2"].topology)


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def test_write_load_round_trip(builtins, tmp_path):
    built = builtins["al2"]
    pdb_path, xml_path = tmp_path / "sys" / "al2.pdb", tmp_path / "sys" / "al2.xml"
    write_system(built, pdb_path, xml_path)
    assert sorted(p.name for p in (tmp_path / "sys").iterdir()) == ["al2.pdb", "al2.xml"]  # no temp files

    loaded = load_system(pdb_path, xml_path, spec=built.spec)
    assert loaded.n_atoms == built.n_atoms == loaded.system.getNumParticles()
    assert loaded.spec == built.spec
    assert [(a.residue.name, a.name) for a in loaded.topology.atoms()] == AL2_ORDER
    assert loaded.topology.getNumBonds() == built.topology.getNumBonds()
    assert loaded.positions.dtype == np.float64
    np.testing.assert_allclose(loaded.positions, built.positions, atol=6e-5)
    e_written = energy(built.system, loaded.positions)
    e_loaded = energy(loaded.system, loaded.positions)
    assert e_loaded == pytest.approx(e_written, rel=1e-6)
    assert dihedral_atoms(md.Topology.from_openmm(loaded.topology)) == dihedral_atoms(
        md.Topology.from_openmm(built.topology))
    assert load_system(pdb_path, xml_path).spec is None


def test_write_overwrites_in_place(builtins, tmp_path):
    pdb_path, xml_path = tmp_path / "a.pdb", tmp_path / "a.xml"
    write_system(builtins["al4"], pdb_path, xml_path)
    write_system(builtins["al2"], pdb_path, xml_path)
    assert load_system(pdb_path, xml_path).n_atoms == 22
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdb", "a.xml"]


def test_load_mismatched_files_raises(builtins, tmp_path):
    write_system(builtins["al2"], tmp_path / "al2.pdb", tmp_path / "al2.xml")
    write_system(builtins["al4"], tmp_path / "al4.pdb", tmp_path / "al4.xml")
    with pytest.raises(ValueError) as info:
        load_system(tmp_path / "al2.pdb", tmp_path / "al4.xml")
    assert "al2.pdb" in str(info.value) and "al4.xml" in str(info.value)
    with pytest.raises(ValueError, match="al4"):
        load_system(tmp_path / "al2.pdb", tmp_path / "al2.xml", spec=get_spec("al4"))


# ---------------------------------------------------------------------------------------------
# sequences and specs
# ---------------------------------------------------------------------------------------------


def test_parse_sequence_ok():
    assert parse_sequence("ace-Ala-nme") == ["ACE", "ALA", "NME"]
    assert parse_sequence("ALA-ALA-ALA") == ["ALA"] * 3
    assert parse_sequence("GLY") == ["GLY"]
    assert parse_sequence(ALL_20)[1:-1] == list(STANDARD_RESIDUES)


@pytest.mark.parametrize(
    "sequence, fragment",
    [
        ("ACE-ALX-NME", "'ALX'"),
        ("ACE-NME-ALA", "NME"),
        ("ALA-ACE-ALA", "ACE"),
        ("ALA--ALA", "empty"),
        ("ACE-NME", "no amino acid"),
        ("", "empty"),
        ("HOH", "'HOH'"),
    ],
)
def test_parse_sequence_errors(sequence, fragment):
    with pytest.raises(ValueError, match=fragment):
        parse_sequence(sequence)


def test_get_spec_builtin_and_overrides():
    assert get_spec("al2") == BUILTIN_SYSTEMS["al2"]
    hot = get_spec("al2", temperature=600)
    assert hot.temperature == 600.0 and hot.sequence == "ACE-ALA-NME" and hot.name == "al2"
    assert BUILTIN_SYSTEMS["al2"].temperature == 300.0
    no_cut = get_spec("al3", nonbonded="NoCutoff")
    assert no_cut.nonbonded == "NoCutoff" and no_cut.cutoff_nm is None
    custom = get_spec("peptide", sequence="ace-gly-nme", forcefield="amber14-all", solvent="obc2",
                      temperature=300)
    assert custom.sequence == "ACE-GLY-NME" and custom.name == "peptide"


@pytest.mark.parametrize("name", ["al2", "al3", "al4"])
def test_spec_dict_round_trip(name):
    spec = BUILTIN_SYSTEMS[name]
    data = json.loads(json.dumps(spec.to_dict()))
    assert PeptideSpec(**data) == spec
    assert set(data) == {"name", "sequence", "forcefield", "solvent", "temperature", "nonbonded", "cutoff_nm"}


def test_get_spec_errors():
    with pytest.raises((KeyError, ValueError), match="al2"):
        get_spec("al7")
    with pytest.raises(ValueError, match="solvent"):
        get_spec("al2", solvent="water")
    with pytest.raises(ValueError, match="amber99nope.xml"):
        get_spec("al2", forcefield="amber99nope")
    with pytest.raises(ValueError, match="'XYZ'"):
        get_spec("peptide", sequence="ACE-XYZ-NME", forcefield="amber14-all", solvent="vacuum", temperature=300)
    with pytest.raises(ValueError, match="NME"):
        get_spec("peptide", sequence="NME-ALA", forcefield="amber14-all", solvent="vacuum", temperature=300)
    with pytest.raises(ValueError, match="temperature"):
        get_spec("al2", temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        get_spec("al2", temperature=-5.0)
    with pytest.raises(ValueError, match="missing"):
        get_spec("peptide", sequence="ALA-ALA", forcefield="amber14-all")
    with pytest.raises(ValueError, match="nonbonded"):
        get_spec("al2", nonbonded="PME")
    with pytest.raises(ValueError, match="cutoff"):
        get_spec("al2", nonbonded="CutoffNonPeriodic")
    with pytest.raises(ValueError, match="cutoff"):
        get_spec("al2", cutoff_nm=1.0)
    with pytest.raises(ValueError, match="cutoff"):
        get_spec("al3", cutoff_nm=-1.0)
    with pytest.raises(ValueError, match="colour"):
        get_spec("al2", colour="red")
