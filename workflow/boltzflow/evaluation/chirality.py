"""Chirality of peptide samples: the L/D centres of a topology, the sign of the signed volume at
each centre, and the repair of globally mirrored samples.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import mdtraj
import numpy as np

from boltzflow.evaluation.arrays import _array

__all__ = ["chirality_centres", "chirality_signs", "fix_chirality"]


# --------------------------------------------------------------------------------------------
# Chirality
# --------------------------------------------------------------------------------------------


def chirality_centres(topology: Any) -> list[tuple[int, int, int, int]]:
    """Atom indices ``(CA, N, C, CB)`` of every residue that has all four atoms.

    ``topology`` is an ``mdtraj.Topology`` or an ``openmm.app.Topology`` (converted with
    ``mdtraj.Topology.from_openmm``). Glycine (no CB) and the caps (no CA) have no centre.
    """
    if not isinstance(topology, mdtraj.Topology):
        try:
            topology = mdtraj.Topology.from_openmm(topology)
        except Exception as err:
            raise TypeError(f"expected an mdtraj or OpenMM topology, got {type(topology).__name__}") from err
    centres: list[tuple[int, int, int, int]] = []
    for residue in topology.residues:
        atoms = {atom.name: atom.index for atom in residue.atoms}
        if all(name in atoms for name in ("CA", "N", "C", "CB")):
            centres.append((int(atoms["CA"]), int(atoms["N"]), int(atoms["C"]), int(atoms["CB"])))
    return centres


def _centre_array(centres: Any) -> np.ndarray:
    c = np.asarray(centres, dtype=np.int64)
    if c.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if c.ndim != 2 or c.shape[1] != 4:
        raise ValueError(f"centres has shape {c.shape}, expected (n_centres, 4)")
    return c


def chirality_signs(x: Any, centres: Sequence[tuple[int, int, int, int]]) -> np.ndarray:
    """Sign of the signed volume ``det[N - CA, C - CA, CB - CA]`` at every centre.

    ``x`` holds ``B`` structures of shape ``(B, 3 * n_atoms)`` (flattened, nm); ``centres`` are the
    ``(CA, N, C, CB)`` quadruples of :func:`chirality_centres`. Returns an int8 array of shape
    ``(B, n_centres)`` with values ``+1`` / ``-1`` (``0`` for an exactly planar centre). The value
    for an L amino acid is whatever the reference (MD) data give; compare signs, not a convention
    (the L residues built by :mod:`boltzflow.systems` give ``+1``).
    Structures with non-finite coordinates raise ``ValueError`` naming their count.
    """
    c = _centre_array(centres)
    xs = _array(x)
    if xs.ndim != 2 or xs.shape[1] % 3:
        raise ValueError(f"x has shape {xs.shape}, expected (B, 3 * n_atoms)")
    n_atoms = xs.shape[1] // 3
    if c.size and (c.min() < 0 or c.max() >= n_atoms):
        raise ValueError(f"x has shape {xs.shape}, expected (B, 3 * n_atoms) with n_atoms > {int(c.max())} "
                         f"(the largest centre atom index) and no negative index")
    pos = xs.reshape(len(xs), n_atoms, 3)
    bad = ~np.isfinite(pos[:, np.unique(c)]).all(axis=(1, 2)) if c.size else np.zeros(len(xs), bool)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} of {len(xs)} structures have non-finite coordinates at a "
                         "chirality centre; drop them first (and report how many)")
    ca = pos[:, c[:, 0]]
    volume = np.einsum("bci,bci->bc", pos[:, c[:, 1]] - ca,
                       np.cross(pos[:, c[:, 2]] - ca, pos[:, c[:, 3]] - ca))
    return np.sign(volume).astype(np.int8)


def fix_chirality(x: Any, centres: Sequence[tuple[int, int, int, int]],
                  reference_signs: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Repair samples that are mirror images of the reference molecule.

    ``reference_signs`` (shape ``(n_centres,)``, values +-1, typically ``chirality_signs`` of one
    MD frame) gives the correct chirality. Each structure of ``x`` (shape ``(B, 3 * n_atoms)``)
    falls in one of three classes:

    * all signs equal the reference: kept as is;
    * all signs are the opposite: mirrored, ``x -> -x`` (inversion through the origin, which
      flips every centre at once);
    * mixed (or a planar centre): *unfixable*, left unchanged and flagged in the mask.

    Mirroring changes no energy: a force field depends only on distances, angles and (the cosines
    of) dihedrals, all invariant under reflection, so ``u(-x) = u(x)`` and the importance weights
    of mirrored samples stay valid. Returns ``(x_fixed, report)`` with ``x_fixed`` a float64 copy
    and ``report`` the counts ``n``, ``mirrored``, ``unfixable``, the rates ``mirrored_rate``,
    ``unfixable_rate`` (NaN for ``n = 0``) and ``unfixable_mask`` (bool, shape ``(B,)``).
    """
    c = _centre_array(centres)
    ref = _array(reference_signs)
    if ref.shape != (len(c),):
        raise ValueError(f"reference_signs has shape {ref.shape}, expected ({len(c)},), one per centre")
    if not np.isin(ref, (-1.0, 1.0)).all():
        raise ValueError(f"reference_signs must be +1 or -1, got {ref.tolist()}")
    signs = chirality_signs(x, c)
    same = (signs == ref).all(axis=1)
    mirrored = (signs == -ref).all(axis=1) & ~same  # with no centres every sample is "same"
    unfixable = ~(same | mirrored)
    x_fixed = _array(x).copy()
    x_fixed[mirrored] *= -1.0
    n = len(x_fixed)
    report = {
        "n": n,
        "mirrored": int(mirrored.sum()),
        "unfixable": int(unfixable.sum()),
        "mirrored_rate": float(mirrored.sum() / n) if n else math.nan,
        "unfixable_rate": float(unfixable.sum() / n) if n else math.nan,
        "unfixable_mask": unfixable,
    }
    return x_fixed, report
