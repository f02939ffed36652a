"""Replica exchange between neighbouring temperatures of parallel-tempering ladders.

One swap round of the deterministic even/odd scheme: pairs ``(k, k+1)`` with ``k`` of one parity
are tried together (they are disjoint), each accepted with probability
``min(1, exp((beta_k - beta_{k+1}) (U_k - U_{k+1})))``. Used by the reference sampler
(:mod:`boltzflow.mcmc.reference`) and by the torch MD engine (:mod:`boltzflow.md.torch_engine`).
"""

from __future__ import annotations

import torch

__all__ = ["neighbour_swap"]


def neighbour_swap(
    energy: torch.Tensor,
    beta: torch.Tensor,
    lo: torch.Tensor,
    generator: torch.Generator,
    *,
    log_uniform: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decide the swaps of slots ``lo`` and ``lo + 1`` in every ladder.

    ``energy`` is ``(C, K)`` (ladder, slot), ``beta`` the ``(K,)`` inverse temperatures in the
    energy's units, ``lo`` the lower slot of each tried pair. One uniform per pair is drawn from
    ``generator`` in the energy's dtype and on its device. With ``log_uniform`` a pair is
    accepted when ``log(u) < log_ratio``, otherwise when ``u < exp(min(log_ratio, 0))``: the two
    tests agree except at rounding, and each caller keeps the one it has always used so that
    its trajectories stay bitwise the same.

    Returns ``(accepted, perm)``: the ``(C, P)`` boolean mask and the ``(C, K)`` slot
    permutation (``new[:, k] = old[:, perm[:, k]]``).

    >>> import torch
    >>> energy = torch.tensor([[0.0, 5.0]], dtype=torch.float64)
    >>> beta = torch.tensor([1.0, 0.5], dtype=torch.float64)
    >>> accepted, perm = neighbour_swap(energy, beta, torch.tensor([0]), torch.Generator().manual_seed(0))
    >>> accepted.shape, perm.shape
    (torch.Size([1, 1]), torch.Size([1, 2]))
    """
    C, K = energy.shape
    hi = lo + 1
    log_ratio = (beta[lo] - beta[hi]).view(1, -1) * (energy[:, lo] - energy[:, hi])  # (C, P)
    draw = torch.rand(log_ratio.shape, generator=generator, dtype=energy.dtype, device=energy.device)
    if log_uniform:
        accepted = torch.log(draw) < log_ratio
    else:
        accepted = draw < torch.exp(torch.clamp(log_ratio, max=0.0))
    slots = torch.arange(K, device=energy.device).repeat(C, 1)
    perm = slots.clone()
    perm[:, lo] = torch.where(accepted, slots[:, hi], slots[:, lo])
    perm[:, hi] = torch.where(accepted, slots[:, lo], slots[:, hi])
    return accepted, perm
