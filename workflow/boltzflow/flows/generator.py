"""A Boltzmann generator: a sampler with an exact density (frame + flow) and the target's energy (Noé et al., Science 2019)."""

from __future__ import annotations

import logging
from typing import Callable

import torch

from boltzflow.flows.sampling import SampleDraw, Sampler, draw_sample_set

__all__ = ["BoltzmannGenerator"]


class BoltzmannGenerator:
    """A flow (its frame included) or any :class:`~boltzflow.flows.sampling.Sampler`, composed with
    the target's reduced energy ``u`` (kT) to give importance weights ``log w = -u - log q``.

    >>> import torch
    >>> from boltzflow.flows import BoltzmannGenerator, build_flow
    >>> flow = build_flow({"transform": "affine", "layers": 2, "hidden": 8,
    ...                    "frame": {"kind": "vector", "dim": 2, "scale": 1.0}})
    >>> bg = BoltzmannGenerator(flow, lambda x: 0.5 * x.square().sum(1))
    >>> x, log_q = bg.sample(4, generator=torch.Generator().manual_seed(0))
    >>> bg.log_w(x).dtype, tuple(bg.log_w(x).shape)
    (torch.float64, (4,))
    """

    def __init__(self, sampler: Sampler, energy: Callable[[torch.Tensor], torch.Tensor]):
        self.sampler, self.energy = sampler, energy

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` configurations and their float64 ``log q``."""
        return self.sampler.sample(n, generator=generator)

    def log_q(self, x: torch.Tensor) -> torch.Tensor:
        """The sampler's exact float64 log-density at ``x`` (needs a ``log_prob``, as a Flow has)."""
        return self.sampler.log_prob(x)

    @torch.no_grad()
    def log_w(self, x: torch.Tensor, log_q: torch.Tensor | None = None) -> torch.Tensor:
        """Float64 log importance weights ``-u(x) - log q(x)`` (``log_q`` is computed if not given)."""
        log_q = self.log_q(x) if log_q is None else log_q
        return -self.energy(x.to(torch.float64)).to(torch.float64) - log_q.to(torch.float64)

    def draw(self, n: int, *, batch_size: int = 10_000, seed: int = 0,
             log: logging.Logger | None = None) -> SampleDraw:
        """A sample set of ``n`` draws with energies and ``log q`` (:func:`~boltzflow.flows.sampling.draw_sample_set`)."""
        return draw_sample_set(self.sampler, self.energy, n, batch_size=batch_size, seed=seed, log=log)
