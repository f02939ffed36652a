"""A molecule's body frame: rigid motions out, internal Cartesian coordinates whitened."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["BodyFrame", "RigidFreeFrame", "fit_body_frame", "choose_reference_atoms", "random_rotations"]

_LOG_8PI2 = math.log(8.0 * math.pi ** 2)


def random_rotations(n: int, generator: torch.Generator | None = None, dtype=torch.float64,
                     device=None) -> torch.Tensor:
    """``n`` rotation matrices ``(n, 3, 3)`` drawn from the Haar measure of SO(3) (unit
    quaternions from normalised 4-D Gaussians)."""
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64, device=device)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rot = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=1).reshape(n, 3, 3)
    return rot.to(dtype)


def _free_coordinates(x: torch.Tensor, n_atoms: int, ref: Sequence[int], rest: torch.Tensor) -> torch.Tensor:
    """``(B, 3 N)`` positions -> ``(B, 3 N - 6)`` free body coordinates ``v``."""
    o, b, c = ref
    pos = x.reshape(len(x), n_atoms, 3)
    r = pos - pos[:, o:o + 1]
    u, w = r[:, b], r[:, c]
    d = u.norm(dim=1)
    e1 = u / d[:, None]
    e = (w * e1).sum(dim=1)
    perp = w - e[:, None] * e1
    f = perp.norm(dim=1)
    e2 = perp / f[:, None]
    e3 = torch.linalg.cross(e1, e2)
    rot = torch.stack([e1, e2, e3], dim=2)          # columns e1, e2, e3
    body = torch.einsum("bni,bij->bnj", r.index_select(1, rest), rot)
    return torch.cat([torch.stack([d.log(), e, f.log()], dim=1), body.reshape(len(x), -1)], dim=1)


class RigidFreeFrame(nn.Module):
    """What the frames that drop a molecule's rigid motion share: ``3 N - 6`` latent numbers for
    ``3 N`` Cartesian ones, and the constant part of ``log|dy/dc|`` (whitening widths ``sigma``,
    the Haar volume ``8 pi^2`` of the orientation the sampler draws, the translation gauge
    ``N^(3/2)``)."""

    n_atoms: int

    @property
    def dim(self) -> int:
        return 3 * self.n_atoms - 6

    @property
    def cartesian_dim(self) -> int:
        return 3 * self.n_atoms

    def _constant_log_jacobian(self, sigma: torch.Tensor) -> float:
        return float(-sigma.log().sum() - _LOG_8PI2 + 1.5 * math.log(self.n_atoms))


class BodyFrame(RigidFreeFrame):
    """Positions ``(B, 3 N)`` (nm) <-> whitened free body coordinates ``(B, 3 N - 6)`` (see the
    module docstring). Build it with :func:`fit_body_frame` or from its config.

    The Boltzmann density of a molecule in vacuum or implicit solvent is invariant under rigid
    motions, so MD frames are spread uniformly over all orientations. A coupling flow that has to
    learn that rotation-invariant density in raw Cartesian coordinates spends most of its capacity on
    it (the papers train for GPU-days with random-rotation augmentation). :class:`BodyFrame` removes
    the rotation exactly instead, as the Cartesian Boltzmann generators of Noe et al. (Science 2019)
    did for proteins, and keeps an exact density on the same space as the other frames.

    The map (one configuration, ``N`` atoms, positions ``X``; three *reference atoms* ``o, b, c``,
    a rigid bonded triangle such as N-CA-C of the central residue):

    1. ``r_i = X_i - X_o`` (translation out);
    2. ``e1 = r_b / |r_b|``, ``e2`` the unit part of ``r_c`` orthogonal to ``e1``, ``e3 = e1 x e2``;
       ``R = [e1 e2 e3]`` is a proper rotation and ``y_i = R^T r_i`` are the *body coordinates*:
       ``y_o = 0``, ``y_b = (d, 0, 0)``, ``y_c = (e, f, 0)`` with ``d, f > 0``;
    3. the ``3 N - 6`` free numbers ``v = (log d, e, log f, y_i for i not in {o, b, c})`` -- the logs
       make every real ``v`` a valid configuration, so the map is a bijection;
    4. the flow latent ``y = U^T (v - mu) / sigma`` (PCA whitening fitted to the training data).

    Density convention (the same as :class:`~boltzflow.flows.cartesian.CartesianFrame`): ``log q(x)``
    is a density on the centroid-free hyperplane in its orthonormal (Helmert) coordinates ``c``. The
    sampler draws ``y`` from the flow and a rotation ``R`` from the Haar measure (independent), so

    q_c(c) = q_y(y) * |dy/dv| * (1 / (8 pi^2)) * (1 / (d^3 f^2)) * N^(3/2),

    because ``dr = d^3 f^2 d(log d) de d(log f) dR dy_rest`` (spherical coordinates for ``r_b``,
    cylindrical ones about ``e1`` for ``r_c``, ``dR`` the Haar measure of SO(3) with volume
    ``8 pi^2``) and the relative coordinates ``r`` are ``A c`` with ``|det A| = sqrt(N)`` per axis
    (``A A^T = I + 1 1^T``). :meth:`BodyFrame.log_jacobian` is the log of everything but ``q_y``.
    Only proper rotations are drawn, so the frame keeps the chirality of its training data.
    """

    def __init__(self, n_atoms: int, reference_atoms: Sequence[int], mean: Sequence[float],
                 components: Sequence[Sequence[float]], sigma: Sequence[float]):
        super().__init__()
        self.n_atoms = int(n_atoms)
        ref = [int(i) for i in reference_atoms]
        if self.n_atoms < 3:
            raise ValueError(f"a body frame needs at least 3 atoms, got {self.n_atoms}")
        if len(set(ref)) != 3 or not all(0 <= i < self.n_atoms for i in ref):
            raise ValueError(f"reference_atoms must be 3 distinct atom indices in 0..{self.n_atoms - 1}, got {ref}")
        self.reference_atoms = tuple(ref)
        dim = 3 * self.n_atoms - 6
        mean_t = torch.tensor(np.asarray(mean, dtype=np.float64))
        comp_t = torch.tensor(np.asarray(components, dtype=np.float64))
        sigma_t = torch.tensor(np.asarray(sigma, dtype=np.float64))
        if mean_t.shape != (dim,) or comp_t.shape != (dim, dim) or sigma_t.shape != (dim,):
            raise ValueError(f"a body frame of {self.n_atoms} atoms needs mean ({dim},), components ({dim}, {dim}) "
                             f"and sigma ({dim},); got {tuple(mean_t.shape)}, {tuple(comp_t.shape)}, "
                             f"{tuple(sigma_t.shape)}")
        if not (torch.isfinite(sigma_t).all() and (sigma_t > 0).all()):
            raise ValueError("body-frame sigma must be finite and > 0")
        rest = [i for i in range(self.n_atoms) if i not in ref]
        self.register_buffer("rest", torch.tensor(rest, dtype=torch.long), persistent=False)
        self.register_buffer("mean", mean_t)
        self.register_buffer("components", comp_t)
        self.register_buffer("sigma", sigma_t)
        self._log_const = self._constant_log_jacobian(sigma_t)

    def _whiten(self, v: torch.Tensor) -> torch.Tensor:
        return ((v - self.mean.to(v.dtype)) @ self.components.to(v.dtype)) / self.sigma.to(v.dtype)

    def _unwhiten(self, y: torch.Tensor) -> torch.Tensor:
        return (y * self.sigma.to(y.dtype)) @ self.components.to(y.dtype).T + self.mean.to(y.dtype)

    def free_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """The unwhitened free body coordinates ``v`` of positions ``x``."""
        if x.ndim != 2 or x.shape[1] != self.cartesian_dim:
            raise ValueError(f"coordinates must have shape (B, {self.cartesian_dim}), got {tuple(x.shape)}")
        return _free_coordinates(x, self.n_atoms, self.reference_atoms, self.rest)

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3 N)`` nm -> ``(B, 3 N - 6)`` latent, in ``x``'s dtype (rigid motion dropped)."""
        return self._whiten(self.free_coordinates(x))

    def from_latent(self, y: torch.Tensor, generator: torch.Generator | None = None,
                    rotate: bool = True) -> torch.Tensor:
        """``(B, 3 N - 6)`` latent -> ``(B, 3 N)`` nm, centroid 0, in a Haar-random orientation
        (drawn with ``generator``; ``rotate=False`` leaves the body orientation)."""
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"latent points must have shape (B, {self.dim}), got {tuple(y.shape)}")
        v = self._unwhiten(y)
        n, (_, b, c) = len(y), self.reference_atoms
        pos = torch.zeros(n, self.n_atoms, 3, dtype=y.dtype, device=y.device)
        pos[:, b, 0] = v[:, 0].exp()
        pos[:, c, 0] = v[:, 1]
        pos[:, c, 1] = v[:, 2].exp()
        pos[:, self.rest] = v[:, 3:].reshape(n, -1, 3)
        if rotate:
            rot = random_rotations(n, generator, dtype=y.dtype, device=y.device)
            pos = torch.einsum("bij,bnj->bni", rot, pos)
        pos = pos - pos.mean(dim=1, keepdim=True)
        return pos.reshape(n, self.cartesian_dim)

    def log_jacobian(self, y: torch.Tensor) -> torch.Tensor:
        """``log q_c(c) - log q_y(y)`` at latent points ``y`` (float64, ``(B,)``)."""
        v = self._unwhiten(y.to(torch.float64))
        return self._log_const - 3.0 * v[:, 0] - 2.0 * v[:, 2]

    def config(self) -> dict[str, Any]:
        return {"kind": "body", "n_atoms": self.n_atoms, "reference_atoms": list(self.reference_atoms),
                "mean": self.mean.tolist(), "components": self.components.tolist(), "sigma": self.sigma.tolist()}


def choose_reference_atoms(topology) -> list[int]:
    """A rigid bonded triangle ``(o, b, c)`` for the body frame, from a topology (mdtraj or OpenMM).

    Peptides: ``(CA, N, C)`` of the central residue that has all three (the N-CA-C angle stays
    near 111 degrees, so ``f`` never nears 0, and the origin in the middle of the chain keeps the
    lever arms to the other atoms short). Otherwise: the heavy atom with at least two bonded
    heavy neighbours nearest the middle of the atom list, and its first two such neighbours.
    """
    import mdtraj

    top = topology if isinstance(topology, mdtraj.Topology) else mdtraj.Topology.from_openmm(topology)
    backbone = []
    for residue in top.residues:
        names = {atom.name: atom.index for atom in residue.atoms}
        if {"N", "CA", "C"} <= set(names):
            backbone.append([names["CA"], names["N"], names["C"]])
    if backbone:
        return backbone[(len(backbone) - 1) // 2]
    heavy = {atom.index for atom in top.atoms if atom.element is not None and atom.element.symbol != "H"}
    neighbours: dict[int, list[int]] = {i: [] for i in heavy}
    for a, b in top.bonds:
        if a.index in heavy and b.index in heavy:
            neighbours[a.index].append(b.index)
            neighbours[b.index].append(a.index)
    centres = sorted((abs(i - (top.n_atoms - 1) / 2), i) for i, nb in neighbours.items() if len(nb) >= 2)
    if not centres:
        raise ValueError("the topology has no heavy atom bonded to two other heavy atoms; "
                         "give the body frame's reference atoms explicitly")
    o = centres[0][1]
    return [o, *sorted(neighbours[o])[:2]]


def fit_body_frame(x: np.ndarray, n_atoms: int, reference_atoms: Sequence[int]) -> dict[str, Any]:
    """The config of a :class:`BodyFrame` fitted to training positions ``x`` ``(n, 3 N)`` (nm):
    the reference atoms (see :func:`choose_reference_atoms`), and the mean and principal axes of
    the free body coordinates (float64)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3 * n_atoms:
        raise ValueError(f"training frames must have shape (n, {3 * n_atoms}), got {x.shape}")
    ref = [int(i) for i in reference_atoms]
    dim = 3 * n_atoms - 6
    if len(x) <= dim:
        raise ValueError(f"whitening {dim} body coordinates needs more than {dim} training frames, got {len(x)}")
    rest = torch.tensor([i for i in range(n_atoms) if i not in ref], dtype=torch.long)
    with torch.no_grad():
        v = _free_coordinates(torch.as_tensor(x), n_atoms, ref, rest).numpy()
    if not np.isfinite(v).all():
        raise ValueError(f"reference atoms {ref} are degenerate in some training frame (coincident or collinear)")
    mean = v.mean(axis=0)
    cov = np.cov(v - mean, rowvar=False)
    evals, evecs = np.linalg.eigh(cov)
    if evals.min() <= 1e-14 * max(evals.max(), 1e-300):
        raise ValueError("the body coordinates of the training frames are degenerate (a zero-variance direction); "
                         "more or more varied frames are needed")
    order = np.argsort(evals)[::-1]
    return {"kind": "body", "n_atoms": int(n_atoms), "reference_atoms": [int(i) for i in ref],
            "mean": mean.tolist(), "components": evecs[:, order].tolist(), "sigma": np.sqrt(evals[order]).tolist()}


def body_frame_from_config(cfg: Mapping[str, Any]) -> BodyFrame:
    return BodyFrame(cfg["n_atoms"], cfg["reference_atoms"], cfg["mean"], cfg["components"], cfg["sigma"])
