import mdtraj
import numpy as np
import openmm.app as app
import pytest
from boltzflow.io import ArtifactError
from boltzflow.systems import load_frames


@pytest.fixture(scope="module")
def al2_files(al2, tmp_path_factory):
    folder = tmp_path_factory.mktemp("userdata")
    pdb = folder / "al2.pdb"
    with open(pdb, "w") as handle:
        app.PDBFile.writeFile(al2.topology, al2.positions * 10.0, handle)  # PDB writer takes angstrom
    xyz = al2.positions[None] + np.random.default_rng(0).normal(scale=0.003, size=(5, 22, 3))
    return folder, pdb, xyz, mdtraj.Topology.from_openmm(al2.topology)


def test_npy_in_nm_and_angstrom(al2_files):
    folder, pdb, xyz, top = al2_files
    np.save(folder / "nm.npy", xyz)
    np.testing.assert_allclose(load_frames(folder / "nm.npy", pdb, top, "nm"), xyz)
    np.save(folder / "flat_A.npy", (xyz * 10).reshape(5, -1))
    np.testing.assert_allclose(load_frames(folder / "flat_A.npy", pdb, top, "angstrom"), xyz)


def test_angstrom_declared_as_nm_is_caught(al2_files):
    folder, pdb, xyz, top = al2_files
    np.save(folder / "wrong.npy", xyz * 10)
    with pytest.raises(ArtifactError, match=r"wrong\.npy: median bond length .* look like angstrom"):
        load_frames(folder / "wrong.npy", pdb, top, "nm")


def test_wrong_atom_count_and_shape(al2_files, al4):
    folder, pdb, xyz, top = al2_files
    np.save(folder / "short.npy", xyz[:, :20])
    with pytest.raises(ArtifactError, match=r"short\.npy: array has shape \(5, 20, 3\)"):
        load_frames(folder / "short.npy", pdb, top, "nm")
    with pytest.raises(ArtifactError, match=r"al2\.pdb: has 22 atoms, but the system has 42"):
        load_frames(folder / "short.npy", pdb, mdtraj.Topology.from_openmm(al4.topology), "nm")


def test_trajectory_formats(al2_files):
    folder, pdb, xyz, top = al2_files
    traj = mdtraj.Trajectory(xyz.astype(np.float32), top)
    traj.save_dcd(str(folder / "t.dcd"))
    traj.save_xtc(str(folder / "t.xtc"))
    np.testing.assert_allclose(load_frames(folder / "t.dcd", pdb, top), xyz, atol=1e-5)
    np.testing.assert_allclose(load_frames(folder / "t.xtc", pdb, top), xyz, atol=2e-3)  # xtc: 1e-3 nm
    (folder / "t.gro").write_text("")
    with pytest.raises(ArtifactError, match=r"t\.gro: unsupported frame format"):
        load_frames(folder / "t.gro", pdb, top)
    (folder / "junk.npy").write_text("junk")
    with pytest.raises(ArtifactError, match=r"junk\.npy: cannot read"):
        load_frames(folder / "junk.npy", pdb, top, "nm")
