"""Bring your own data: frames from files instead of simulating."""

from __future__ import annotations

import os
from pathlib import Path

import mdtraj
import numpy as np

from boltzflow.io import ArtifactError

__all__ = ["check_bond_lengths", "load_frames"]

BOND_WINDOW_NM = (0.08, 0.2)


def check_bond_lengths(path: str | os.PathLike, xyz: np.ndarray, topology: mdtraj.Topology) -> float:
    """Median bonded distance in nm over (up to 100) frames; raises if outside the window."""
    bonds = np.array([[a.index, b.index] for a, b in topology.bonds])
    if len(bonds) == 0:
        raise ArtifactError(f"{path}: the topology has no bonds, cannot check units")
    sample = xyz[:: max(1, len(xyz) // 100)]
    lengths = np.linalg.norm(sample[:, bonds[:, 0]] - sample[:, bonds[:, 1]], axis=-1)
    median = float(np.median(lengths))
    lo, hi = BOND_WINDOW_NM
    if not lo <= median <= hi:
        hint = ""
        if lo <= median / 10 <= hi:
            hint = " - the frames look like angstrom; declare units: angstrom (or convert to nm)"
        elif lo <= median * 10 <= hi:
            hint = " - the frames look like nm but were declared as angstrom"
        raise ArtifactError(
            f"{path}: median bond length is {median:.4g} nm, outside the sane range "
            f"{lo}-{hi} nm{hint}"
        )
    return median


def load_frames(
    frames: str | os.PathLike,
    topology_pdb: str | os.PathLike,
    system_topology: mdtraj.Topology,
    units: str | None = None,
) -> np.ndarray:
    """Frames as (N, n_atoms, 3) float64 in nm, checked against the system's topology.

    Accepted frame files: ``.npy`` (shape ``(N, n_atoms, 3)`` or ``(N, 3 * n_atoms)``, with the
    length unit given in the config, ``nm`` or ``angstrom``), and ``.xtc`` / ``.dcd`` read with mdtraj
    (which converts to nm). A ``.pdb`` gives the atom order of the frames; it must match the
    system's topology atom for atom (count and elements), since energies and dihedrals are computed
    with the system built from its spec.

    A cheap sanity check catches the most common mistake, a unit mix-up: the median length of the
    topology's bonds must lie in a window around 0.1-0.15 nm; a value ten times larger means the
    frames are in angstrom but were declared as nm.
    """
    frames, topology_pdb = Path(frames), Path(topology_pdb)
    for p in (frames, topology_pdb):
        if not p.exists():
            raise ArtifactError(f"{p}: file does not exist")
    try:
        user_top = mdtraj.load_topology(str(topology_pdb))
    except Exception as err:  # mdtraj raises many types for a bad PDB
        raise ArtifactError(f"{topology_pdb}: cannot read as a PDB topology ({err})") from err
    if user_top.n_atoms != system_topology.n_atoms:
        raise ArtifactError(
            f"{topology_pdb}: has {user_top.n_atoms} atoms, but the system has "
            f"{system_topology.n_atoms}"
        )
    mismatched = [
        (a.index, a.element.symbol, b.element.symbol)
        for a, b in zip(user_top.atoms, system_topology.atoms)
        if a.element != b.element
    ]
    if mismatched:
        i, got, want = mismatched[0]
        raise ArtifactError(
            f"{topology_pdb}: atom order differs from the system's: atom {i} is {got}, expected "
            f"{want} ({len(mismatched)} mismatches); reorder the frames to the system's topology"
        )

    suffix = frames.suffix.lower()
    if suffix == ".npy":
        if units not in ("nm", "angstrom"):
            raise ArtifactError(f"{frames}: .npy frames need units 'nm' or 'angstrom', got {units!r}")
        try:
            xyz = np.load(frames, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ArtifactError(f"{frames}: cannot read as a .npy array ({err})") from err
        n_atoms = system_topology.n_atoms
        if xyz.ndim == 2 and xyz.shape[1] == 3 * n_atoms:
            xyz = xyz.reshape(len(xyz), n_atoms, 3)
        if xyz.ndim != 3 or xyz.shape[1:] != (n_atoms, 3):
            raise ArtifactError(
                f"{frames}: array has shape {xyz.shape}, expected (N, {n_atoms}, 3) or "
                f"(N, {3 * n_atoms}) for a system of {n_atoms} atoms"
            )
        xyz = xyz.astype(np.float64) * (0.1 if units == "angstrom" else 1.0)
    elif suffix in (".xtc", ".dcd"):
        try:
            xyz = mdtraj.load(str(frames), top=user_top).xyz.astype(np.float64)
        except Exception as err:
            raise ArtifactError(f"{frames}: cannot read trajectory with {topology_pdb} ({err})") from err
    else:
        raise ArtifactError(f"{frames}: unsupported frame format {suffix!r} (use .npy, .xtc or .dcd)")
    if len(xyz) == 0:
        raise ArtifactError(f"{frames}: contains no frames")
    if not np.isfinite(xyz).all():
        raise ArtifactError(f"{frames}: contains non-finite coordinates")
    check_bond_lengths(frames, xyz, system_topology)
    return xyz
