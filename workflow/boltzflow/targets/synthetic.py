"""Synthetic benchmark densities: toy 2-D densities, Gaussian mixtures, Many Well, funnel, and the
particle systems LJ-13, LJ-55 and DW-4 (whose equilibrium samples come from
:func:`boltzflow.mcmc.reference_samples`); each energy is ``-log`` of the unnormalised density,
with parameters kept in float64 and moved to the dtype and device of ``x`` on every call.
"""

from __future__ import annotations

import csv
import functools
import math
from importlib import resources
from typing import Sequence

import numpy as np
import torch

from boltzflow.targets.base import Target

__all__ = [
    "GaussianMixture",
    "GMM40",
    "MixtureWeights2D",
    "EightGaussians",
    "FourModeGaussianMixture",
    "ManyWell",
    "Funnel",
    "Checkerboard",
    "Rings",
    "ParticleTarget",
    "LennardJonesCluster",
    "MultiDoubleWell",
    "gmm40_means",
    "manywell_pair_normaliser",
    "manywell_envelope_log_bound",
    "sample_double_well_1d",
    "MANYWELL_ENVELOPE",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _as_float64(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float64)


# --------------------------------------------------------------------------------------------
# Gaussian mixtures
# --------------------------------------------------------------------------------------------


class GaussianMixture(Target):
    """``p(x) = sum_k w_k N(x; mu_k, s^2 I)``: a normalised mixture of isotropic Gaussians.

    ``energy = -log p`` is evaluated with a log-sum-exp over components, so ``log_z = 0``;
    ``sample`` draws a component index from the weights and then a Gaussian, which is exact.
    Attributes ``means`` ``(K, dim)``, ``weights`` ``(K,)`` (float64 CPU tensors), ``std``.

    >>> mixture = GaussianMixture("two", [[-1.0], [1.0]], [0.5, 0.5], std=0.5)
    >>> mixture.sample(4, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([4, 1])
    """

    def __init__(self, name: str, means, weights, std: float) -> None:
        means = _as_float64(means)
        weights = _as_float64(weights)
        if means.ndim != 2:
            raise ValueError(f"{name}: means must have shape (K, dim), got {tuple(means.shape)}")
        if weights.shape != (means.shape[0],):
            raise ValueError(f"{name}: need one weight per component ({means.shape[0]}), got {tuple(weights.shape)}")
        std = float(std)
        if not (math.isfinite(std) and std > 0):
            raise ValueError(f"{name}: std must be a positive number, got {std}")
        self.name = name
        self.dim = int(means.shape[1])
        self.means = means
        self.weights = weights / weights.sum()
        self.std = std
        self.log_z = 0.0

    def component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x; mu_k, s^2 I)`` for every row and component: ``(B, K)``."""
        means = self.means.to(device=x.device, dtype=x.dtype)
        log_w = torch.log(self.weights).to(device=x.device, dtype=x.dtype)
        sq = ((x.unsqueeze(1) - means.unsqueeze(0)) ** 2).sum(-1)
        log_norm = 0.5 * self.dim * (_LOG_2PI + 2.0 * math.log(self.std))
        return log_w - 0.5 * sq / self.std**2 - log_norm

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return -torch.logsumexp(self.component_log_probs(x), dim=-1)

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        comp = torch.multinomial(self.weights, int(n), replacement=True, generator=generator)
        noise = torch.randn(int(n), self.dim, generator=generator, dtype=torch.float64)
        return (self.means[comp] + self.std * noise).to(dtype)


@functools.lru_cache(maxsize=1)
def _gmm40_means_array() -> np.ndarray:
    text = resources.files("boltzflow").joinpath("data", "gmm40_means.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    if [c.strip() for c in rows[0]] != ["x", "y"]:
        raise ValueError(f"gmm40_means.csv: unexpected header {rows[0]}")
    means = np.array([[float(a), float(b)] for a, b in rows[1:] if a.strip()], dtype=np.float64)
    if means.shape != (40, 2):
        raise ValueError(f"gmm40_means.csv: expected 40 rows of (x, y), got {means.shape}")
    return means


def gmm40_means() -> torch.Tensor:
    """The 40 component means of ``gmm40`` (package data ``boltzflow/data/gmm40_means.csv``)."""
    return torch.from_numpy(_gmm40_means_array().copy())


class GMM40(GaussianMixture):
    """40 equal-weight 2-D Gaussians with isotropic std 1.3133 (= softplus(1)).

    The means (spread over roughly ``[-40, 40]^2``) are fixed package data. Source: Midgley
    et al., "Flow Annealed Importance Sampling Bootstrap" (ICLR 2023). ``log_z = 0``; exact
    sampler.

    >>> GMM40().means.shape
    torch.Size([40, 2])
    """

    def __init__(self, name: str = "gmm40", std: float = 1.3133) -> None:
        super().__init__(name, _gmm40_means_array(), np.full(40, 1.0 / 40.0), std)


class MixtureWeights2D(GaussianMixture):
    """``p = sum_i w_i N(mu_i, 0.05 I_2)`` with means ``(-3, 0), (-1, 0), (1, 0), (3, 0)``.

    Note that 0.05 is the *variance* (std ~0.2236). The weights default to
    ``(0.1, 0.2, 0.3, 0.4)``; ``weights`` overrides them with any 4 finite positive numbers,
    which are divided by their sum (so ``(1, 2, 3, 4)`` is the default again). Unequal weights
    on well separated modes make this a test of whether a sampler recovers mode weights (the
    EBM stage uses ``means`` to define mode zones). ``log_z = 0``; exact sampler.

    >>> MixtureWeights2D().weights.tolist()
    [0.1, 0.2, 0.3, 0.4]
    """

    VARIANCE = 0.05

    def __init__(self, name: str = "mixture2d_weights",
                 weights: Sequence[float] = (0.1, 0.2, 0.3, 0.4)) -> None:
        try:
            w = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name}: weights must be 4 positive numbers, got {weights!r}") from err
        if w.shape != (4,) or not np.all(np.isfinite(w)) or not np.all(w > 0):
            raise ValueError(f"{name}: weights must be 4 finite positive numbers, got {weights!r}")
        means = np.array([[-3.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
        super().__init__(name, means, w / w.sum(), math.sqrt(self.VARIANCE))


class EightGaussians(GaussianMixture):
    """Eight equal-weight Gaussians ``N(mu_i, 0.15^2 I)``, ``mu_i = r (cos 2 pi i/8, sin 2 pi i/8)``.

    ``r = 1`` by default. The classic toy density of Grathwohl et al., "FFJORD" (ICLR 2019)
    (there with a larger radius). ``log_z = 0``; exact sampler.

    >>> EightGaussians().log_z
    0.0
    """

    def __init__(self, name: str = "eight_gaussians", radius: float = 1.0, std: float = 0.15) -> None:
        angles = 2.0 * math.pi * np.arange(8) / 8.0
        means = float(radius) * np.stack([np.cos(angles), np.sin(angles)], axis=1)
        super().__init__(name, means, np.full(8, 1.0 / 8.0), std)


class FourModeGaussianMixture(GaussianMixture):
    """Equal mixture of ``N(mu_k, I_d)``, ``k = 1..4``, in ``d`` dimensions.

    ``mu_1 = a (1, ..., 1)``, ``mu_2 = a (-1, ..., -1, 1, ..., 1)`` (first half ``-1``),
    ``mu_3 = -mu_2``, ``mu_4 = -mu_1``, with ``a = 0.5919`` by default (override ``a``). The
    modes sit at distance ``2 a sqrt(d/2)`` or ``2 a sqrt(d)`` apart, so they separate as ``d``
    grows. ``log_z = 0``; exact sampler.

    >>> FourModeGaussianMixture("gmm4_d16", 16).means.shape
    torch.Size([4, 16])
    """

    def __init__(self, name: str, dim: int, a: float = 0.5919) -> None:
        if dim < 2 or dim % 2:
            raise ValueError(f"{name}: dim must be even and >= 2, got {dim}")
        half = dim // 2
        mu1 = np.ones(dim)
        mu2 = np.concatenate([-np.ones(half), np.ones(half)])
        means = float(a) * np.stack([mu1, mu2, -mu2, -mu1])
        super().__init__(name, means, np.full(4, 0.25), 1.0)
        self.a = float(a)


# --------------------------------------------------------------------------------------------
# Many Well
# --------------------------------------------------------------------------------------------


def _double_well_1d(x: np.ndarray) -> np.ndarray:
    return x**4 - 6.0 * x**2 - 0.5 * x


@functools.lru_cache(maxsize=1)
def manywell_pair_normaliser() -> float:
    """``Z_1 = int exp(-(x^4 - 6 x^2 - 0.5 x)) dx`` by the trapezoidal rule.

    The integrand is smooth and negligible outside ``[-6, 6]`` (``exp(-800)``), where the
    trapezoidal rule converges geometrically; 24,001 nodes give ``11784.509265127...``, which
    agrees with the published 11784.50927 to 4e-10 relative.
    """
    x = np.linspace(-6.0, 6.0, 24_001)
    return float(np.trapezoid(np.exp(-_double_well_1d(x)), x))


#: Proposal for rejection sampling of the 1-D factor ``exp(-(x^4 - 6 x^2 - 0.5 x))``:
#: a Gaussian at each well (std 0.26, a little wider than the curvature widths ~0.2) weighted
#: by the well masses, plus 1 % of ``N(0, 1)`` to cover the barrier region around 0. Acceptance
#: probability ~0.79.
MANYWELL_ENVELOPE = {
    "weights": (0.1488, 0.8412, 0.01),
    "means": (-1.7108, 1.7525, 0.0),
    "stds": (0.26, 0.26, 1.0),
}


def _envelope_log_q(x: np.ndarray) -> np.ndarray:
    env = MANYWELL_ENVELOPE
    parts = [math.log(w) - 0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * _LOG_2PI
             for w, m, s in zip(env["weights"], env["means"], env["stds"])]
    return np.logaddexp.reduce(parts, axis=0)


@functools.lru_cache(maxsize=1)
def manywell_envelope_log_bound() -> float:
    """``log M`` with ``exp(-g(x)) <= M q(x)`` for all ``x`` (``g`` the 1-D double well).

    ``log(exp(-g)/q)`` is maximised on a grid of spacing 2e-5 over ``[-8, 8]`` (outside,
    the quartic makes it fall below -3000) and padded by 1e-3 to cover the gap between grid
    nodes (its derivative there is bounded by ~100, so the gap costs < 1e-3).
    """
    x = np.linspace(-8.0, 8.0, 800_001)
    return float(np.max(-_double_well_1d(x) - _envelope_log_q(x))) + 1e-3


def sample_double_well_1d(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Exact samples ``(n,)`` (float64) of ``p(x) ~ exp(-(x^4 - 6 x^2 - 0.5 x))`` by rejection."""
    env = MANYWELL_ENVELOPE
    w = torch.tensor(env["weights"], dtype=torch.float64)
    mu = torch.tensor(env["means"], dtype=torch.float64)
    sd = torch.tensor(env["stds"], dtype=torch.float64)
    log_m = manywell_envelope_log_bound()
    out: list[torch.Tensor] = []
    have = 0
    while have < n:
        m = max(64, int(1.35 * (n - have)) + 16)
        comp = torch.multinomial(w, m, replacement=True, generator=generator)
        prop = mu[comp] + sd[comp] * torch.randn(m, generator=generator, dtype=torch.float64)
        u = torch.rand(m, generator=generator, dtype=torch.float64)
        p = prop.numpy()
        log_ratio = torch.from_numpy(-_double_well_1d(p) - _envelope_log_q(p) - log_m)
        keep = prop[torch.log(u) < log_ratio]
        out.append(keep)
        have += keep.numel()
    return torch.cat(out)[:n]


class ManyWell(Target):
    """Many Well: ``D/2`` independent copies of a 2-D double well.

    ``energy(x) = sum_{k} [x_{2k}^4 - 6 x_{2k}^2 - 0.5 x_{2k} + 0.5 x_{2k+1}^2]`` over the
    consecutive pairs ``(x_{2k}, x_{2k+1})``; ``2^(D/2)`` modes with unequal weights (the right
    well holds ~85 % of each pair's mass). ``log_z = (D/2) (log Z_1 + 0.5 log 2 pi)`` with
    ``Z_1 = 11784.50927`` computed by quadrature (:func:`manywell_pair_normaliser`). Exact
    sampler: the first coordinate of each pair by rejection sampling from
    :data:`MANYWELL_ENVELOPE`, the second ``~ N(0, 1)``. Source: Midgley et al., "Flow
    Annealed Importance Sampling Bootstrap" (ICLR 2023), from the double well of Wu, Köhler and
    Noé, "Stochastic Normalizing Flows" (NeurIPS 2020).

    >>> ManyWell("manywell32", 32).energy(torch.zeros(1, 32))
    tensor([0.])
    """

    def __init__(self, name: str, dim: int) -> None:
        if dim < 2 or dim % 2:
            raise ValueError(f"{name}: dim must be even and >= 2, got {dim}")
        self.name = name
        self.dim = int(dim)
        self.log_z = 0.5 * dim * (math.log(manywell_pair_normaliser()) + 0.5 * _LOG_2PI)
        #: the coordinates whose sign says which well of its pair a point is in (the barrier top
        #: is at -0.04, where the density is 5e-5 of the major well's peak)
        self.well_coordinates = tuple(range(0, self.dim, 2))

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, 0::2], x[:, 1::2]
        return (x1**4 - 6.0 * x1**2 - 0.5 * x1 + 0.5 * x2**2).sum(-1)

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        n, half = int(n), self.dim // 2
        out = torch.empty(n, self.dim, dtype=torch.float64)
        out[:, 0::2] = sample_double_well_1d(n * half, generator).reshape(n, half)
        out[:, 1::2] = torch.randn(n, half, generator=generator, dtype=torch.float64)
        return out.to(dtype)


# --------------------------------------------------------------------------------------------
# Neal's funnel
# --------------------------------------------------------------------------------------------


class Funnel(Target):
    """Neal's funnel: ``x_0 ~ N(0, sigma^2)``, ``x_i | x_0 ~ N(0, exp(x_0))`` for ``i >= 1``.

    ``sigma = 3``, ``d = 10``. The energy is the normalised ``-log p``, so ``log_z = 0``; exact
    sampler. Source: Neal, "Slice sampling", Annals of Statistics 31 (2003).

    >>> Funnel().sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 10])
    """

    def __init__(self, name: str = "funnel10", dim: int = 10, sigma: float = 3.0) -> None:
        if dim < 2:
            raise ValueError(f"{name}: dim must be >= 2, got {dim}")
        self.name = name
        self.dim = int(dim)
        self.sigma = float(sigma)
        self.log_z = 0.0

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x0, rest = x[:, 0], x[:, 1:]
        k = self.dim - 1
        e0 = 0.5 * (x0 / self.sigma) ** 2 + math.log(self.sigma) + 0.5 * _LOG_2PI
        e_rest = 0.5 * torch.exp(-x0) * (rest**2).sum(-1) + 0.5 * k * x0 + 0.5 * k * _LOG_2PI
        return e0 + e_rest

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        n = int(n)
        x0 = self.sigma * torch.randn(n, 1, generator=generator, dtype=torch.float64)
        rest = torch.exp(0.5 * x0) * torch.randn(n, self.dim - 1, generator=generator, dtype=torch.float64)
        return torch.cat([x0, rest], dim=1).to(dtype)


# --------------------------------------------------------------------------------------------
# Checkerboard and rings
# --------------------------------------------------------------------------------------------


class Checkerboard(Target):
    """Uniform density on the 8 black unit squares of a 4 x 4 board on ``[-2, 2]^2``.

    A point is on a black square when ``-2 <= x, y < 2`` and ``floor(x) + floor(y)`` is even
    (the squares of the FFJORD toy data, Grathwohl et al., ICLR 2019). The density is a hard
    indicator, so the energy is ``0`` on black squares and ``+inf`` elsewhere (white squares
    and outside the board); ``log_z = log 8`` exactly. The gradient is 0 everywhere it exists,
    so gradient-based samplers see no signal: use this target for sample-based (forward KL)
    training and evaluation. Non-finite coordinates give NaN. Exact sampler.

    >>> Checkerboard().energy(torch.tensor([[0.5, 0.5], [0.5, -0.5]])).isfinite().tolist()
    [True, False]
    """

    def __init__(self, name: str = "checkerboard") -> None:
        self.name = name
        self.dim = 2
        self.log_z = math.log(8.0)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        on_board = ((x >= -2.0) & (x < 2.0)).all(-1)
        parity = torch.floor(x).sum(-1).remainder(2.0)
        black = on_board & (parity == 0)
        base = torch.where(black, torch.zeros_like(x[:, 0]), torch.full_like(x[:, 0], math.inf))
        # "+ 0 * x" keeps the graph (zero gradient) and turns non-finite rows into NaN.
        return base + 0.0 * x.sum(-1)

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        n = int(n)
        col = torch.randint(0, 4, (n,), generator=generator)  # floor(x) + 2
        row_pick = torch.randint(0, 2, (n,), generator=generator)
        row = 2 * row_pick + (col % 2)  # floor(y) + 2 has the parity of floor(x) + 2
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        corner = torch.stack([col, row], dim=1).to(torch.float64) - 2.0
        return (corner + u).to(dtype)


class Rings(Target):
    """Four concentric rings: in polar coordinates the angle is uniform and the radius follows
    an equal mixture of ``N(i + 1, 0.15^2)``, ``i = 0..3``, truncated to ``r > 0``.

    Density in the plane: ``p(x) = p_r(|x|) / (2 pi |x|)``, where ``p_r`` is the truncated
    mixture, renormalised exactly by ``C = sum_i Phi((i + 1) / 0.15) / 4`` (``1 - C`` is ~3e-12),
    so ``log_z = 0`` exactly. Because ``p_r(0) > 0`` the planar density has an integrable
    ``1/|x|`` singularity at the origin; it only matters within ~1e-10 of 0, and the energy
    clamps ``|x|^2`` at the dtype's smallest normal number so that ``x = 0`` still gives a
    finite (very low) energy and a zero gradient. Exact sampler (truncated radius by
    rejection, uniform angle). In the spirit of the FFJORD "rings" toy data (Grathwohl et al.,
    ICLR 2019).

    >>> Rings().sample(5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    """

    STD = 0.15
    CENTRES = (1.0, 2.0, 3.0, 4.0)

    def __init__(self, name: str = "rings") -> None:
        self.name = name
        self.dim = 2
        mass = sum(0.5 * math.erfc(-c / (self.STD * math.sqrt(2.0))) for c in self.CENTRES) / 4.0
        self.truncation_log_mass = math.log(mass)
        self.log_z = 0.0

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        r2 = (x**2).sum(-1).clamp_min(torch.finfo(x.dtype).tiny)
        r = torch.sqrt(r2)
        centres = torch.tensor(self.CENTRES, dtype=x.dtype, device=x.device)
        z = (r.unsqueeze(-1) - centres) / self.STD
        log_comp = -0.5 * z**2 - math.log(self.STD) - 0.5 * _LOG_2PI - math.log(len(self.CENTRES))
        log_pr = torch.logsumexp(log_comp, dim=-1) - self.truncation_log_mass
        return -(log_pr - math.log(2.0 * math.pi) - torch.log(r))

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        n = int(n)
        centres = torch.tensor(self.CENTRES, dtype=torch.float64)
        comp = torch.randint(0, len(self.CENTRES), (n,), generator=generator)
        r = centres[comp] + self.STD * torch.randn(n, generator=generator, dtype=torch.float64)
        bad = r <= 0
        while bool(bad.any()):  # exact truncation; essentially never loops
            k = int(bad.sum())
            r[bad] = centres[comp[bad]] + self.STD * torch.randn(k, generator=generator, dtype=torch.float64)
            bad = r <= 0
        theta = 2.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.stack([r * torch.cos(theta), r * torch.sin(theta)], dim=1).to(dtype)


# --------------------------------------------------------------------------------------------
# Particle systems: Lennard-Jones clusters and DW-4
# --------------------------------------------------------------------------------------------


class ParticleTarget(Target):
    """``n_particles`` particles in ``spatial_dim`` dimensions, flattened particle-major:
    ``x[:, i * spatial_dim + a]`` is coordinate ``a`` of particle ``i``.

    The energies are invariant under translations, so ``exp(-energy)`` cannot be normalised
    on ``R^dim``; the equilibrium density lives on the centre-of-mass-free subspace
    (``sum_i x_i = 0``) and so do all reference samples. ``log_z`` is ``None`` (unknown) and
    there is no exact sampler.

    >>> dw4 = MultiDoubleWell()
    >>> dw4.squared_distances(torch.zeros(1, 8)).shape  # the 6 pairs of 4 particles
    torch.Size([1, 6])
    """

    com_free = True

    def __init__(self, name: str, n_particles: int, spatial_dim: int) -> None:
        self.name = name
        self.n_particles = int(n_particles)
        self.spatial_dim = int(spatial_dim)
        self.dim = self.n_particles * self.spatial_dim
        self.log_z = None
        pairs = torch.triu_indices(self.n_particles, self.n_particles, offset=1)
        self._pair_i, self._pair_j = pairs[0], pairs[1]

    def positions(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.n_particles, self.spatial_dim)

    def remove_com(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each configuration's centre of mass (equal masses) moved to 0."""
        pos = self.positions(x)
        return (pos - pos.mean(dim=1, keepdim=True)).reshape(x.shape)

    def squared_distances(self, x: torch.Tensor) -> torch.Tensor:
        """Squared distances ``(B, n_pairs)`` of the pairs ``i < j``."""
        pos = self.positions(x)
        i = self._pair_i.to(x.device)
        j = self._pair_j.to(x.device)
        return ((pos[:, i] - pos[:, j]) ** 2).sum(-1)


class LennardJonesCluster(ParticleTarget):
    """A Lennard-Jones cluster held together by a harmonic trap around its centre of mass.

    ``E(x) = 2 sum_{i<j} [(1/r_ij)^12 - 2 (1/r_ij)^6] + 0.5 sum_i |x_i - mean(x)|^2``
    (``epsilon = r_m = 1``; the factor 2 is the sum over ordered pairs of the benchmark code).
    The pair term is computed as ``s (s - 2)`` with ``s = (r^2)^-3``, so close pairs give a
    large or ``+inf`` energy, never NaN; coincident particles give ``+inf``. Translation
    invariant: samples live at zero centre of mass (see :class:`ParticleTarget`). Source:
    Köhler, Klein and Noé, "Equivariant Flows" (ICML 2020) for LJ-13; Klein et al.,
    "Equivariant flow matching" (NeurIPS 2023) and Akhound-Sadegh et al., "Iterated Denoising
    Energy Matching" (ICML 2024) for LJ-13/LJ-55 with this scaling.

    >>> lj13 = LennardJonesCluster("lj13", 13)
    >>> lj13.dim, lj13.log_z
    (39, None)
    """

    def __init__(self, name: str, n_particles: int) -> None:
        super().__init__(name, n_particles, 3)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squared_distances(x).pow(-3)
        lj = 2.0 * (s * (s - 2.0)).sum(-1)
        centred = self.remove_com(x)
        return lj + 0.5 * (centred**2).sum(-1)


class MultiDoubleWell(ParticleTarget):
    """DW-4: four particles in 2-D with a double-well pair potential.

    ``E(x) = sum_{i<j} [0.9 (d_ij - 4)^4 - 4 (d_ij - 4)^2]``. Pair minima at
    ``d = 4 +- 1.49`` (energy -4.44 each). Translation (and rotation) invariant: samples
    live at zero centre of mass. Distances use ``sqrt(max(d^2, tiny))`` so coincident particles
    give a finite energy with a zero gradient. Source: Köhler, Klein and Noé, "Equivariant
    Flows" (ICML 2020).

    >>> MultiDoubleWell().dim
    8
    """

    def __init__(self, name: str = "dw4", n_particles: int = 4, spatial_dim: int = 2,
                 a: float = 0.9, b: float = -4.0, d0: float = 4.0) -> None:
        super().__init__(name, n_particles, spatial_dim)
        self.a, self.b, self.d0 = float(a), float(b), float(d0)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        d2 = self.squared_distances(x)
        d = torch.sqrt(d2.clamp_min(torch.finfo(x.dtype).tiny))
        u = d - self.d0
        return (self.a * u**4 + self.b * u**2).sum(-1)


# --------------------------------------------------------------------------------------------
# Factories by name
# --------------------------------------------------------------------------------------------


def _suffix_int(name: str, prefix: str) -> int:
    return int(name[len(prefix):])


def _make_gmm40(name: str, **overrides) -> Target:
    return GMM40(name, **overrides)


def _make_manywell(name: str) -> Target:
    return ManyWell(name, _suffix_int(name, "manywell"))


def _make_funnel(name: str, **overrides) -> Target:
    return Funnel(name, 10, **overrides)


def _make_lj(name: str) -> Target:
    return LennardJonesCluster(name, _suffix_int(name, "lj"))


def _make_dw4(name: str) -> Target:
    return MultiDoubleWell(name)


def _make_checkerboard(name: str) -> Target:
    return Checkerboard(name)


def _make_mixture2d(name: str, **overrides) -> Target:
    return MixtureWeights2D(name, **overrides)


def _make_eight(name: str, **overrides) -> Target:
    return EightGaussians(name, **overrides)


def _make_rings(name: str) -> Target:
    return Rings(name)


def _make_gmm4(name: str, **overrides) -> Target:
    return FourModeGaussianMixture(name, _suffix_int(name, "gmm4_d"), **overrides)


#: The factory ``f(name, **overrides)`` of each synthetic target (their kinds: boltzflow.targets.catalogue).
FACTORIES = {
    "gmm40": _make_gmm40,
    **dict.fromkeys(("manywell32", "manywell64", "manywell128"), _make_manywell),
    "funnel10": _make_funnel,
    **dict.fromkeys(("lj13", "lj55"), _make_lj),
    "dw4": _make_dw4,
    "checkerboard": _make_checkerboard,
    "mixture2d_weights": _make_mixture2d,
    "eight_gaussians": _make_eight,
    "rings": _make_rings,
    **dict.fromkeys(("gmm4_d16", "gmm4_d32", "gmm4_d64"), _make_gmm4),
}
