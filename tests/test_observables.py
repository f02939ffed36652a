import mdtraj
import numpy as np
import pytest
from boltzflow.systems import backbone_dihedrals, dihedral_atoms


@pytest.fixture(scope="module")
def al2_top(al2):
    return mdtraj.Topology.from_openmm(al2.topology)


def test_al2_dihedral_atoms_are_the_standard_ones(al2_top):
    assert dihedral_atoms(al2_top) == {"phi_ALA2": [4, 6, 8, 14], "psi_ALA2": [6, 8, 14, 16]}


def test_dihedral_values_match_a_hand_computed_geometry(al2, al2_top):
    xyz = al2.positions.copy()
    # place phi's four atoms on a known geometry: a square-ish path with a 60 degree twist
    phi = [4, 6, 8, 14]
    xyz[phi[0]] = [1.0, 0.0, 0.0]
    xyz[phi[1]] = [0.0, 0.0, 0.0]
    xyz[phi[2]] = [0.0, 1.0, 0.0]
    angle = np.deg2rad(60.0)
    xyz[phi[3]] = [np.cos(angle), 1.0, np.sin(angle)]
    table = backbone_dihedrals(xyz.reshape(1, -1), al2_top)
    # IUPAC sign convention: looking down b->c, positive = clockwise rotation of the far bond
    assert table["phi_ALA2"].iloc[0] == pytest.approx(-angle, abs=1e-5)
    assert list(table.columns) == ["frame", "phi_ALA2", "psi_ALA2"]


def test_mirror_image_flips_dihedral_signs(al2, al2_top):
    xyz = al2.positions.reshape(1, -1)
    a = backbone_dihedrals(xyz, al2_top)
    b = backbone_dihedrals(-xyz, al2_top)
    np.testing.assert_allclose(a[["phi_ALA2", "psi_ALA2"]], -b[["phi_ALA2", "psi_ALA2"]], atol=1e-5)


def test_wrong_shape_is_refused(al2_top):
    with pytest.raises(ValueError, match=r"expected \(N, 66\)"):
        backbone_dihedrals(np.zeros((2, 60)), al2_top)
