"""Cartesian coordinates of a molecule <-> the flow's latent space."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["CartesianFrame", "helmert_basis"]


def helmert_basis(n: int) -> np.ndarray:
    """An ``(n, n - 1)`` matrix with orthonormal columns orthogonal to ``(1, ..., 1)``."""
    if n < 2:
        raise ValueError(f"a centroid-free frame needs at least 2 atoms, got {n}")
    basis = np.zeros((n, n - 1))
    for j in range(1, n):
        # column j - 1: the first j atoms against atom j, normalised
        basis[:j, j - 1] = 1.0
        basis[j, j - 1] = -float(j)
        basis[:, j - 1] /= math.sqrt(j * (j + 1))
    return basis


class CartesianFrame(torch.nn.Module):
    """Maps flattened Cartesian coordinates ``(B, 3 N)`` (nm) to the flow latent ``(B, 3 N - 3)``
    and back (see the module docstring).

    Parameters
    ----------
    n_atoms:
        ``N``.
    scale:
        nm per latent unit (the root mean square of the centroid-free training coordinates,
        see :meth:`fit_scale`).

    Convention (used for training, sampling and every importance weight): a configuration of ``N``
    atoms, flattened ``(3 N,)`` in nm, is represented by its **centroid-free** part. The energy does
    not depend on a translation, so the Boltzmann density has no normalisable translational part; we
    take its restriction to the hyperplane "centroid = 0" (the unweighted mean of the atom
    positions). Orthonormal coordinates on that hyperplane are ``c = Q^T X``, where ``X`` is the
    ``(N, 3)`` position matrix and ``Q`` is an ``(N, N - 1)`` matrix whose orthonormal columns are
    orthogonal to the all-ones vector (a Helmert basis); ``c`` has ``d = 3 (N - 1)`` numbers and
    ``X - centroid = Q c`` exactly. A flow's ``log q(x)`` is a density in these coordinates
    (Lebesgue measure on the hyperplane), which is the same measure the target ``exp(-u(x))``
    restricted to the hyperplane is normalised with, so ``log w = -u(x) - log q(x)`` is a proper
    log importance weight. Samples are returned as full ``(3 N,)`` coordinates with centroid 0.

    The latent used by the networks is ``y = c / scale``, where ``scale`` is the root mean square of
    ``c`` over the training data (the global scale of the papers' preprocessing); the map from ``c``
    to ``y`` has log-determinant ``-d log(scale)``.
    """

    def __init__(self, n_atoms: int, scale: float = 1.0):
        super().__init__()
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be finite and > 0, got {scale}")
        self.n_atoms = int(n_atoms)
        self.register_buffer("basis", torch.tensor(helmert_basis(self.n_atoms), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))

    @property
    def dim(self) -> int:
        """Latent dimension ``3 N - 3``."""
        return 3 * (self.n_atoms - 1)

    @property
    def cartesian_dim(self) -> int:
        return 3 * self.n_atoms

    @staticmethod
    def fit_scale(x: np.ndarray | torch.Tensor, n_atoms: int) -> float:
        """Root mean square of the centroid-free coordinates of training frames ``x`` (nm)."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float64)
        basis = torch.tensor(helmert_basis(n_atoms), dtype=torch.float64)
        c = torch.einsum("bnk,nm->bmk", x.reshape(len(x), n_atoms, 3), basis)
        return float(c.square().mean().sqrt())

    def log_det_to_latent(self) -> torch.Tensor:
        """``log |det d y / d c|`` = ``-d log(scale)`` (float64 scalar)."""
        return -self.dim * torch.log(self.scale)

    def log_jacobian(self, y: torch.Tensor) -> torch.Tensor:
        """``log q_c(c) - log q_y(y)`` per latent point (constant here; float64, ``(B,)``)."""
        return self.log_det_to_latent().expand(len(y))

    def config(self) -> dict:
        return {"kind": "cartesian", "n_atoms": self.n_atoms, "scale": float(self.scale)}

    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3 N)`` nm -> ``(B, 3 N - 3)`` latent, in ``x``'s dtype (the centroid is dropped)."""
        if x.ndim != 2 or x.shape[1] != self.cartesian_dim:
            raise ValueError(f"coordinates must have shape (B, {self.cartesian_dim}), got {tuple(x.shape)}")
        basis = self.basis.to(x.dtype)
        c = torch.einsum("bnk,nm->bmk", x.reshape(len(x), self.n_atoms, 3), basis)
        return c.reshape(len(x), self.dim) / self.scale.to(x.dtype)

    def from_latent(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, 3 N - 3)`` latent -> ``(B, 3 N)`` nm with centroid 0, in ``y``'s dtype (the
        orientation is the flow's own; ``generator`` is unused)."""
        if y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"latent points must have shape (B, {self.dim}), got {tuple(y.shape)}")
        basis = self.basis.to(y.dtype)
        c = y.reshape(len(y), self.n_atoms - 1, 3) * self.scale.to(y.dtype)
        return torch.einsum("bmk,nm->bnk", c, basis).reshape(len(y), self.cartesian_dim)
