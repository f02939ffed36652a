"""Importance-weighted sample sets drawn in batches from any sampler with an exact ``log q``
(a :class:`~boltzflow.flows.Flow`, the CNF, adapters for the EBM's flow and the diffusion samplers)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

__all__ = ["Sampler", "SampleDraw", "draw_sample_set"]


class Sampler(Protocol):
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ...


@dataclass
class SampleDraw:
    """The valid samples of one draw and how they were obtained."""

    x: np.ndarray          # (n_valid, dim) float32
    energy: np.ndarray     # (n_valid,) float64, kT (may hold +inf)
    log_q: np.ndarray      # (n_valid,) float64
    n_drawn: int
    n_invalid: int
    n_zero_weight: int
    sampling_s: float      # wall time of sampling with log q (without energies)
    energy_s: float        # wall time of the energies

    @property
    def log_w(self) -> np.ndarray:
        return -self.energy - self.log_q

    def stats(self) -> dict[str, float | int]:
        return {"n_drawn": self.n_drawn, "n_valid": len(self.energy), "n_invalid": self.n_invalid,
                "n_zero_weight": self.n_zero_weight, "sampling_s": self.sampling_s, "energy_s": self.energy_s,
                "sampling_s_per_200k": self.sampling_s * 200_000 / max(self.n_drawn, 1)}


def draw_sample_set(sampler: Sampler, energy: Callable[[torch.Tensor], torch.Tensor], n: int, *,
                    batch_size: int = 10_000, seed: int = 0, log: logging.Logger | None = None) -> SampleDraw:
    """``n`` samples from ``sampler`` in batches of ``batch_size`` with their energies (``energy``
    maps a float64 ``(B, dim)`` tensor to ``(B,)`` reduced energies) and exact ``log q``.

    Draws are reproducible: batch ``k`` uses a generator seeded with ``(seed, k)``. The energy is
    evaluated in float64 on the coordinates as stored (float32), and ``log_w = -u - log q``. Bad
    samples never crash the stage: a NaN or infinite ``log q``, or NaN coordinates or energy, make
    a row invalid, left out and counted (``n_invalid``, reported beside the ESS denominator, which
    counts every proposal); an energy of ``+inf`` (e.g. overlapping atoms) is a valid sample of
    zero weight, kept with ``log_w = -inf`` and counted (``n_zero_weight``).
    """
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got {n} and {batch_size}")
    log = log or logging.getLogger("boltzflow.sampling")
    xs, us, lqs = [], [], []
    n_invalid = n_zero = 0
    sampling_s = energy_s = 0.0
    done, batch, last_report = 0, 0, time.time()
    while done < n:
        size = min(batch_size, n - done)
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + batch)
        start = time.perf_counter()
        with torch.no_grad():
            x, log_q = sampler.sample(size, generator=gen)
        sampling_s += time.perf_counter() - start
        x32 = x.detach().to(torch.float32).cpu()
        log_q = log_q.detach().to(torch.float64).cpu()
        start = time.perf_counter()
        with torch.no_grad():
            u = torch.full((size,), torch.nan, dtype=torch.float64)
            coords_ok = torch.isfinite(x32).all(dim=1)
            if coords_ok.any():
                u[coords_ok] = energy(x32[coords_ok].to(torch.float64)).detach().to(torch.float64).cpu()
        energy_s += time.perf_counter() - start
        valid = coords_ok & torch.isfinite(log_q) & ~torch.isnan(u) & (u != -torch.inf)
        n_invalid += int((~valid).sum())
        n_zero += int((u[valid] == torch.inf).sum())
        xs.append(x32[valid].numpy())
        us.append(u[valid].numpy())
        lqs.append(log_q[valid].numpy())
        done += size
        batch += 1
        if time.time() - last_report > 30 or done == n:
            log.info("sampled %d/%d (%.0f%%): %.0f samples/s with log q, %.0f energies/s; %d invalid, %d zero weight",
                     done, n, 100.0 * done / n, done / max(sampling_s, 1e-9), done / max(energy_s, 1e-9),
                     n_invalid, n_zero)
            last_report = time.time()
    if n_invalid:
        log.warning("%d of %d samples were invalid (non-finite coordinates, log q or energy) and left out",
                    n_invalid, n)
    return SampleDraw(np.concatenate(xs), np.concatenate(us), np.concatenate(lqs), n, n_invalid, n_zero,
                      sampling_s, energy_s)
