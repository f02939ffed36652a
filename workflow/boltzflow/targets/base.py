"""The ``Target`` contract: a batched, differentiable reduced energy with optional exact extras."""

from __future__ import annotations

import abc

import torch

__all__ = ["Target"]


class Target(abc.ABC):
    """A target density ``p(x) = exp(-energy(x)) / Z`` on ``R^dim``.

    Every method in boltzflow (flow evaluation, EBM training, diffusion samplers, reweighting,
    free-energy perturbation) talks to a density through this interface:

    - ``dim``: dimension of a configuration (``3 * n_atoms`` for molecules);
    - ``energy(x)``: ``x`` of shape ``(B, dim)`` (float32 or float64, any device) to reduced
      energies ``(B,)`` - units of kT for molecules, ``-log`` of the unnormalised density for
      synthetic targets - differentiable by autograd, in the dtype and on the device of ``x``;
    - ``log_z``: ``log`` of the normaliser of ``exp(-energy)`` where it is known exactly, else ``None``;
    - ``sample(n)``: exact samples where an exact sampler exists, else ``NotImplementedError``.

    Non-finite coordinates give non-finite energies for those rows only; they never raise, so one
    bad configuration cannot crash a batch.

    >>> class Quadratic(Target):
    ...     dim = 2
    ...     def _energy(self, x):
    ...         return 0.5 * (x**2).sum(-1)
    >>> Quadratic().energy(torch.tensor([[1.0, 2.0], [0.0, float("nan")]]))
    tensor([2.5000,    nan])
    """

    name: str = "target"
    dim: int
    log_z: float | None = None

    @abc.abstractmethod
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        """Reduced energies of a checked ``(B, dim)`` batch."""

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Reduced energies ``(B,)`` of configurations ``x`` of shape ``(B, dim)``."""
        self.check_shape(x)
        return self._energy(x)

    def energy_and_forces(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reduced energies ``(B,)`` and forces ``-grad energy`` ``(B, dim)`` (no graph kept)."""
        self.check_shape(x)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u = self._energy(x)
            (grad,) = torch.autograd.grad(u.sum(), x)
        return u.detach(), -grad

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised log-density; needs ``log_z``."""
        if self.log_z is None:
            raise NotImplementedError(f"{self.name}: log Z is not known exactly")
        return -self.energy(x) - self.log_z

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``n`` exact samples of shape ``(n, dim)`` on the CPU."""
        raise NotImplementedError(f"{self.name}: no exact sampler (use the reference-sample rule)")

    def check_shape(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name}: expected a torch.Tensor of shape (B, {self.dim}), got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"{self.name}: expected shape (B, {self.dim}), got {tuple(x.shape)}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, log_z={self.log_z})"
