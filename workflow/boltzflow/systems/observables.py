"""Observables of peptide frames: backbone dihedrals of every residue (mdtraj)."""

from __future__ import annotations

import mdtraj
import numpy as np
import pandas as pd

__all__ = ["backbone_dihedrals", "dihedral_atoms"]


def _label(kind: str, topology: mdtraj.Topology, atoms: np.ndarray) -> str:
    # phi is assigned to the residue of its N/CA atoms, psi to that of its N/CA/C atoms.
    residue = topology.atom(int(atoms[1])).residue
    return f"{kind}_{residue.name}{residue.resSeq}"


def dihedral_atoms(topology: mdtraj.Topology) -> dict[str, list[int]]:
    """The four atom indices of every backbone phi and psi, by column name."""
    empty = mdtraj.Trajectory(np.zeros((1, topology.n_atoms, 3)), topology)
    out: dict[str, list[int]] = {}
    for kind, fn in (("phi", mdtraj.compute_phi), ("psi", mdtraj.compute_psi)):
        indices, _ = fn(empty)
        for atoms in indices:
            out[_label(kind, topology, atoms)] = [int(a) for a in atoms]
    return out


def backbone_dihedrals(x: np.ndarray, topology: mdtraj.Topology) -> pd.DataFrame:
    """phi/psi of every residue for frames ``x`` of shape (N, 3 * n_atoms) in nm.

    Dihedral tables are keyed by ``frame``, the row index of the sample set they were computed
    from, with one column per angle named ``phi_<RES><seq>`` / ``psi_<RES><seq>`` (e.g.
    ``phi_ALA2``), in radians in ``(-pi, pi]``. The table metadata records the four atom indices
    of every angle.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != 3 * topology.n_atoms:
        raise ValueError(
            f"frames have shape {x.shape}, expected (N, {3 * topology.n_atoms}) for a topology "
            f"of {topology.n_atoms} atoms"
        )
    atoms = dihedral_atoms(topology)
    if not atoms:
        raise ValueError("the topology has no backbone phi/psi dihedrals")
    traj = mdtraj.Trajectory(x.reshape(len(x), -1, 3).astype(np.float32), topology)
    angles = mdtraj.compute_dihedrals(traj, np.array(list(atoms.values())), periodic=False)
    frame = pd.DataFrame(angles.astype(np.float64), columns=list(atoms))
    frame.insert(0, "frame", np.arange(len(x), dtype=np.int64))
    return frame
