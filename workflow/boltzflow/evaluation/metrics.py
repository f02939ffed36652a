"""Metrics of the evaluation stage (all computed in float64).

Importance weights and resampling
    - Kish effective sample size, normalised: ``ESS / N = (sum w)^2 / (N sum w^2)`` with
      ``w = exp(log_w)``, evaluated as ``exp(2 logsumexp(lw) - logsumexp(2 lw)) / N``
      (:func:`kish_ess`).
    - Self-normalised importance resampling: indices drawn with probabilities
      ``softmax(log_w)``, optionally after dropping the largest log-weights (:func:`snis_resample`).
    - Importance-sampling estimate of a normalising constant,
      ``log Z ~ logsumexp(log_w) - log N`` (:func:`log_z_importance`).

Distances between sample sets
    - Energy Wasserstein distances E-W1 / E-W2 between two 1-D samples of energies
      (:func:`energy_wasserstein`).
    - Torus Wasserstein-2 distance T-W2 between two sets of dihedral vectors with the periodic
      (shortest-arc) squared distance (:func:`torus_wasserstein2`).

Chirality
    - The L/D centres of a peptide (:func:`chirality_centres`), the sign of the signed volume at
      each centre (:func:`chirality_signs`), and the repair of globally mirrored samples
      (:func:`fix_chirality`).

Free energies between two states (dimensionless, in units of kT)
    - From (weighted) state populations, ``dF = -log(p_B / p_A)``
      (:func:`free_energy_from_populations`).
    - Zwanzig / targeted free-energy perturbation, ``dF = -log mean(exp(-work))``
      (:func:`fep_free_energy`).
    - Percentile bootstrap confidence intervals of any statistic, optionally by moving blocks
      (:func:`bootstrap_ci`), and the summary of a metric over training seeds (:func:`seed_summary`).

Synthetic targets with known modes
    - The weight of each mode as the (weighted) fraction of samples in its Voronoi zone
      (:func:`mode_weights`) and the fraction of modes visited at all (:func:`mode_coverage`).
      With points on a regular grid and ``log_w`` the model's unnormalised log-density, the same
      function integrates a density over the zones numerically.

MCMC convergence
    - Rank-normalised split R-hat per coordinate (Vehtari, Gelman, Simpson, Carpenter, Buerkner,
      "Rank-normalization, folding, and localization", Bayesian Analysis 2021): the larger of the
      bulk and the folded (tail) statistic (:func:`split_rhat`).

Conventions: a log-weight of ``-inf`` (a sample the target gives zero density) counts as weight 0
and never makes a function fail; NaN (and ``+inf``) log-weights raise ``ValueError`` naming their
counts, so that the caller drops them explicitly and reports how many. Every function checks the
shapes of its inputs and names the expected shape when they are wrong. Inputs may be numpy arrays,
sequences or (CPU) torch tensors; outputs are numpy arrays or Python floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import mdtraj
import numpy as np
import ot
import torch
from scipy.special import logsumexp

__all__ = [
    "kish_ess",
    "Resampled",
    "snis_resample",
    "log_z_importance",
    "energy_wasserstein",
    "torus_wasserstein2",
    "wasserstein2",
    "chirality_centres",
    "chirality_signs",
    "fix_chirality",
    "free_energy_from_populations",
    "fep_free_energy",
    "BootstrapCI",
    "bootstrap_ci",
    "seed_summary",
    "mode_weights",
    "mode_coverage",
    "split_rhat",
]


def kish_ess(log_w: np.ndarray | torch.Tensor) -> float:
    """Normalised Kish ESS in ``[0, 1]`` of unnormalised log importance weights."""
    lw = torch.as_tensor(np.asarray(log_w) if not isinstance(log_w, torch.Tensor) else log_w).to(torch.float64)
    lw = lw.reshape(-1)
    if lw.numel() == 0:
        raise ValueError("no log-weights")
    if torch.isnan(lw).any() or (lw == torch.inf).any():
        raise ValueError(f"{int(torch.isnan(lw).sum())} NaN and {int((lw == torch.inf).sum())} +inf log-weights; "
                         "drop or fix them first (and report how many)")
    if (lw == -torch.inf).all():
        return 0.0
    return float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)) / lw.numel())


# --------------------------------------------------------------------------------------------
# Input helpers
# --------------------------------------------------------------------------------------------


def _array(a: Any, dtype: Any = np.float64) -> np.ndarray:
    """``a`` as a numpy array of ``dtype`` (torch tensors are detached and moved to the CPU)."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _log_weights(log_w: Any, name: str = "log_w", n: int | None = None) -> np.ndarray:
    """1-D float64 log-weights; raise on NaN / ``+inf`` with counts, on a wrong length, on none."""
    lw = _array(log_w)
    expected = "(N,)" if n is None else f"({n},)"
    if lw.ndim != 1 or (n is not None and lw.shape[0] != n):
        raise ValueError(f"{name} has shape {lw.shape}, expected {expected}")
    if lw.size == 0:
        raise ValueError(f"{name} is empty")
    n_nan, n_pinf = int(np.isnan(lw).sum()), int(np.isposinf(lw).sum())
    if n_nan or n_pinf:
        raise ValueError(f"{name}: {n_nan} NaN and {n_pinf} +inf values among {lw.size}; "
                         "drop or fix them first (and report how many)")
    return lw


def _finite(values: Any, name: str, shape: str, ndim: int) -> np.ndarray:
    """Non-empty float64 array of ``ndim`` dimensions with only finite entries."""
    a = _array(values)
    if a.ndim != ndim:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    if a.shape[0] == 0:
        raise ValueError(f"{name} is empty, expected {shape} with N >= 1")
    bad = ~np.isfinite(a)
    if bad.any():
        rows = int(bad.reshape(a.shape[0], -1).any(axis=1).sum())
        raise ValueError(f"{name}: {int(bad.sum())} non-finite values (in {rows} of {a.shape[0]} rows); "
                         "drop them first (and report how many)")
    return a


def _rng(generator_or_seed: np.random.Generator | int) -> np.random.Generator:
    if isinstance(generator_or_seed, np.random.Generator):
        return generator_or_seed
    return np.random.default_rng(generator_or_seed)


# --------------------------------------------------------------------------------------------
# Importance weights
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resampled:
    """Result of :func:`snis_resample`: the drawn ``indices`` (int64, shape ``(n,)``) and
    ``n_filtered``, how many samples the quantile filter gave weight 0."""

    indices: np.ndarray
    n_filtered: int


def snis_resample(log_w: Any, n: int, *, generator_or_seed: np.random.Generator | int,
                  quantile_filter: float = 0.0) -> Resampled:
    """Multinomial resampling of ``N`` weighted samples into ``n`` unweighted ones.

    Index ``i`` is drawn (with replacement) with probability ``softmax(log_w)_i``, computed in
    float64 from the log-weights shifted by their log-sum-exp. ``-inf`` log-weights have
    probability 0; NaN / ``+inf`` raise ``ValueError`` with counts.

    ``quantile_filter = q`` in ``[0, 1)`` first gives weight 0 to the ``floor(q * N)`` samples with
    the largest log-weights (``N`` counts every sample, ``-inf`` ones included; ties at the cut are
    broken by position, the later sample being dropped first). This removes the rare extreme
    weights that would otherwise be drawn many times (q = 0.002 in the Boltzmann-generator papers).

    ``generator_or_seed`` is a ``numpy.random.Generator`` or an integer seed. Returns
    :class:`Resampled`; raises ``ValueError`` if no sample with positive weight is left.
    """
    lw = _log_weights(log_w).copy()
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    q = float(quantile_filter)
    if not 0.0 <= q < 1.0:
        raise ValueError(f"quantile_filter must be in [0, 1), got {quantile_filter!r}")
    n_drop = int(math.floor(q * lw.size))
    if n_drop:
        order = np.argsort(lw, kind="stable")  # ascending; among ties the later index comes last
        lw[order[-n_drop:]] = -np.inf
    if np.isneginf(lw).all():
        raise ValueError(f"all {lw.size} samples have weight 0 (after dropping {n_drop} by the quantile "
                         "filter); nothing to resample")
    p = np.exp(lw - logsumexp(lw))
    p /= p.sum()
    indices = _rng(generator_or_seed).choice(lw.size, size=int(n), replace=True, p=p)
    return Resampled(indices=indices.astype(np.int64), n_filtered=n_drop)


def log_z_importance(log_w: Any) -> float:
    """Importance-sampling estimate of ``log Z``: ``logsumexp(log_w) - log N``.

    With ``log_w = log p~(x) - log q(x)`` for ``x ~ q``, an exactly normalised proposal, and
    ``p~`` the unnormalised target, ``mean(w)`` is an unbiased estimate of ``Z``; its logarithm is
    biased *downwards* for finite ``N`` (Jensen: ``E[log Z_hat] <= log Z``), the more so the
    smaller the ESS. ``-inf`` log-weights count as 0 (all ``-inf`` gives ``-inf``).
    """
    lw = _log_weights(log_w)
    return float(logsumexp(lw) - math.log(lw.size))


# --------------------------------------------------------------------------------------------
# Wasserstein distances
# --------------------------------------------------------------------------------------------


def energy_wasserstein(u_samples: Any, u_reference: Any, p: int = 1) -> float:
    """1-D Wasserstein distance between two samples of energies (uniform weights on each).

    ``p = 1``: E-W1 = ``min_pi E_pi |u - u'|`` (``ot.emd2_1d`` with the Euclidean cost);
    ``p = 2``: E-W2 = ``sqrt(min_pi E_pi (u - u')^2)`` (square root of ``ot.emd2_1d`` with the
    squared-Euclidean cost). In 1-D the optimal plan matches quantiles, so the two samples may
    have different sizes. Inputs have shape ``(N,)`` and ``(M,)``; non-finite energies raise
    ``ValueError`` naming their count.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    a = _finite(u_samples, "u_samples", "(N,)", 1)
    b = _finite(u_reference, "u_reference", "(M,)", 1)
    if p == 1:
        return float(ot.emd2_1d(a, b, metric="euclidean"))
    return float(math.sqrt(max(float(ot.emd2_1d(a, b, metric="sqeuclidean")), 0.0)))


def _subsample(x: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    if len(x) <= max_points:
        return x
    return x[np.sort(rng.choice(len(x), size=max_points, replace=False))]


def _point_sets(x_a: Any, x_b: Any, names: tuple[str, str], max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two finite ``(N, k)`` and ``(M, k)`` arrays, each randomly subsampled to ``max_points`` rows."""
    if isinstance(max_points, bool) or not isinstance(max_points, (int, np.integer)) or max_points < 1:
        raise ValueError(f"max_points must be a positive integer, got {max_points!r}")
    a = _finite(x_a, names[0], "(N, k)", 2)
    b = _finite(x_b, names[1], f"(M, {a.shape[1]})", 2)
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"{names[1]} has shape {b.shape}, expected (M, {a.shape[1]}) like {names[0]} {a.shape}")
    rng = np.random.default_rng(seed)
    return _subsample(a, int(max_points), rng), _subsample(b, int(max_points), rng)


def _sqrt_uniform_ot(cost: np.ndarray) -> float:
    """The square root of the exact OT cost between uniform distributions on the rows and columns."""
    n, m = cost.shape
    w2 = ot.emd2(np.full(n, 1.0 / n), np.full(m, 1.0 / m), cost, numItermax=10**9)
    return float(math.sqrt(max(float(w2), 0.0)))


def torus_wasserstein2(angles_a: Any, angles_b: Any, *, max_points: int = 10_000, seed: int = 0) -> float:
    """Torus Wasserstein-2 distance T-W2 between two sets of dihedral vectors.

    ``angles_a`` has shape ``(N, k)`` and ``angles_b`` shape ``(M, k)``, in radians (any range;
    typically the phi and psi of all residues side by side). The ground cost is the squared
    geodesic distance on the flat torus,
    ``c(i, j) = sum_l min(d_l, 2 pi - d_l)^2`` with ``d_l = (a_il - b_jl) mod 2 pi`` in
    ``[0, 2 pi)``; the exact optimal-transport cost between the uniform distributions on the two
    sets is computed with ``ot.emd2(..., numItermax=10**9)`` and T-W2 is its square root.

    A set with more than ``max_points`` rows is replaced by a uniformly random subset of
    ``max_points`` distinct rows, drawn with ``numpy.random.default_rng(seed)`` (first for ``a``,
    then for ``b``). A random subset rather than an evenly spaced one keeps the estimate unbiased
    whatever the row order (e.g. samples sorted by weight or concatenated by batch). The cost
    matrix holds ``N * M`` float64 numbers (800 MB at 10 000 x 10 000).
    """
    a, b = _point_sets(angles_a, angles_b, ("angles_a", "angles_b"), max_points, seed)
    two_pi = 2.0 * math.pi
    cost = np.zeros((len(a), len(b)))
    for col in range(a.shape[1]):  # one angle at a time: never an (N, M, k) array
        d = np.mod(a[:, col, None] - b[None, :, col], two_pi)
        cost += np.minimum(d, two_pi - d) ** 2
    return _sqrt_uniform_ot(cost)


def wasserstein2(x_a: Any, x_b: Any, *, max_points: int = 5_000, seed: int = 0) -> float:
    """Wasserstein-2 distance between two point sets ``(N, d)`` and ``(M, d)`` with the squared
    Euclidean cost: exact OT (``ot.emd2``) between the uniform distributions, square root. Sets
    larger than ``max_points`` are subsampled at random as in :func:`torus_wasserstein2`."""
    a, b = _point_sets(x_a, x_b, ("x_a", "x_b"), max_points, seed)
    return _sqrt_uniform_ot(ot.dist(a, b, metric="sqeuclidean"))


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


# --------------------------------------------------------------------------------------------
# Free energies
# --------------------------------------------------------------------------------------------


def _indicator(values: Any, name: str, n: int | None = None) -> np.ndarray:
    a = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    expected = "(N,)" if n is None else f"({n},)"
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValueError(f"{name} has shape {a.shape}, expected {expected} booleans")
    if a.dtype != np.bool_:
        raise ValueError(f"{name} must be boolean state indicators, got dtype {a.dtype}")
    return a


def free_energy_from_populations(in_a: Any, in_b: Any, *, log_w: Any = None) -> float:
    """Free energy of state B relative to A from populations: ``dF = -log(p_B / p_A)`` (kT).

    ``in_a`` and ``in_b`` are boolean indicators of shape ``(N,)``. Unweighted, ``p`` are the
    fractions of samples in each state, so ``dF = -log(n_B / n_A)``. With log importance weights
    ``log_w`` (shape ``(N,)``; ``-inf`` counts as 0) they are the self-normalised weighted
    fractions, ``dF = -(logsumexp(log_w[in_b]) - logsumexp(log_w[in_a]))``. Raises ``ValueError``
    if a state holds no sample (or only samples of weight 0).
    """
    a = _indicator(in_a, "in_a")
    b = _indicator(in_b, "in_b", len(a))
    lw = np.zeros(len(a)) if log_w is None else _log_weights(log_w, "log_w", len(a))
    log_p = {}
    for label, mask in (("A", a), ("B", b)):
        if not mask.any():
            raise ValueError(f"state {label} is empty: no sample among {len(a)} falls in it")
        log_p[label] = logsumexp(lw[mask])
        if log_p[label] == -np.inf:
            raise ValueError(f"state {label} has total weight 0: its {int(mask.sum())} samples all have "
                             "log-weight -inf")
    return float(-(log_p["B"] - log_p["A"]))


def fep_free_energy(work: Any) -> float:
    """Zwanzig free-energy perturbation: ``dF = F_B - F_A = -log mean(exp(-work))`` (kT).

    Plain FEP: ``work = u_B(x) - u_A(x)`` for ``x ~ A`` (reduced energies). Targeted FEP through
    an invertible map ``M``: ``work = u_B(M(x)) - u_A(x) - log|det J_M(x)|`` for ``x ~ A``; the
    estimate is exact (zero variance) when ``M`` pushes A onto B. The caller computes the work;
    this function evaluates ``-(logsumexp(-work) - log N)`` in float64. ``work = +inf`` counts as
    a zero contribution (all ``+inf`` gives ``+inf``); NaN or ``-inf`` work raises ``ValueError``.
    Like :func:`log_z_importance` the estimate is biased (here upwards) for finite ``N``.
    """
    w = _array(work)
    if w.ndim != 1:
        raise ValueError(f"work has shape {w.shape}, expected (N,)")
    if np.isneginf(w).any() or np.isnan(w).any():
        raise ValueError(f"work: {int(np.isnan(w).sum())} NaN and {int(np.isneginf(w).sum())} -inf values "
                         f"among {w.size}; drop or fix them first (and report how many)")
    lw = _log_weights(-w, "work")
    return float(-(logsumexp(lw) - math.log(lw.size)))


class BootstrapCI(NamedTuple):
    """A point estimate and the bounds of its bootstrap confidence interval."""

    estimate: float
    low: float
    high: float


def _bootstrap_indices(n: int, block: int | None, rng: np.random.Generator) -> np.ndarray:
    if block is None or block == 1:
        return rng.integers(0, n, size=n)
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    return (starts[:, None] + np.arange(block)[None, :]).reshape(-1)[:n]


def bootstrap_ci(statistic: Callable[..., Any], *arrays: Any, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0, block: int | None = None) -> BootstrapCI:
    """Percentile bootstrap confidence interval of ``statistic(*arrays)``.

    The arrays (numpy-convertible, equal length ``N`` along the first axis) are resampled
    *together* by row, ``n_boot`` times, with replacement; ``estimate`` is the statistic of the
    original data and ``(low, high)`` are the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the resampled statistics. With ``block = L`` the rows are drawn as ``ceil(N / L)``
    runs of ``L`` consecutive rows starting at uniform positions (moving-block bootstrap, for
    time-correlated series such as MD; choose ``L`` well above the correlation time), truncated to
    ``N`` rows. Errors raised by ``statistic`` propagate; a non-finite replicate raises
    ``ValueError`` with the count. Example: ``bootstrap_ci(free_energy_from_populations, in_a, in_b)``.
    """
    if not arrays:
        raise ValueError("bootstrap_ci needs at least one array")
    data = [_array(a, dtype=None) for a in arrays]
    if any(d.ndim == 0 for d in data):
        raise ValueError(f"arrays have shapes {[d.shape for d in data]}, expected (N, ...) each")
    n = data[0].shape[0]
    if n == 0 or any(d.shape[0] != n for d in data):
        raise ValueError(f"arrays have shapes {[d.shape for d in data]}, expected the same (N, ...) with N >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot!r}")
    if block is not None and not 1 <= block <= n:
        raise ValueError(f"block must be in [1, {n}], got {block!r}")
    rng = np.random.default_rng(seed)
    estimate = float(statistic(*data))
    replicates = np.empty(n_boot)
    for i in range(n_boot):
        idx = _bootstrap_indices(n, block, rng)
        replicates[i] = float(statistic(*(d[idx] for d in data)))
    bad = int((~np.isfinite(replicates)).sum())
    if bad:
        raise ValueError(f"{bad} of {n_boot} bootstrap replicates of the statistic are not finite")
    low, high = np.quantile(replicates, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return BootstrapCI(estimate, float(low), float(high))


def seed_summary(values: Any, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> dict[str, float | int]:
    """Mean of a metric over training seeds with a percentile bootstrap CI of the mean.

    ``values`` has shape ``(n_seeds,)`` and must be finite. Returns ``{"mean", "low", "high", "n"}``;
    for a single seed ``low = high = mean`` (no spread can be estimated).
    """
    v = _finite(values, "values", "(n_seeds,)", 1)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    means = v[np.random.default_rng(seed).integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return {"mean": mean, "low": float(low), "high": float(high), "n": int(v.size)}


# --------------------------------------------------------------------------------------------
# Modes of synthetic targets
# --------------------------------------------------------------------------------------------


def _points_and_centres(x: Any, centres: Any) -> tuple[np.ndarray, np.ndarray]:
    c = _finite(centres, "centres", "(K, d)", 2)
    xs = _finite(x, "x", f"(N, {c.shape[1]})", 2)
    if xs.shape[1] != c.shape[1]:
        raise ValueError(f"x has shape {xs.shape}, expected (N, {c.shape[1]}) like centres {c.shape}")
    return xs, c


def _squared_distances(x: np.ndarray, c: np.ndarray, chunk: int = 65_536):
    """Yield ``(rows, d2)`` with the squared distances of chunks of ``x`` to all centres."""
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        yield rows, ((x[rows, None, :] - c[None, :, :]) ** 2).sum(axis=-1)


def mode_weights(x: Any, centres: Any, *, log_w: Any = None) -> np.ndarray:
    """Weight of each mode: the fraction of samples whose nearest centre (Euclidean) it is.

    ``x`` has shape ``(N, d)`` and ``centres`` shape ``(K, d)``; the space is split into the
    Voronoi zones of the centres and the result (shape ``(K,)``, float64, sums to 1) is the share
    of samples in each zone, or with ``log_w`` (shape ``(N,)``) the self-normalised weighted share
    ``sum_{i in zone} softmax(log_w)_i``. Ties go to the first centre.
    """
    xs, c = _points_and_centres(x, centres)
    if log_w is None:
        w = np.full(len(xs), 1.0 / len(xs))
    else:
        lw = _log_weights(log_w, "log_w", len(xs))
        if np.isneginf(lw).all():
            raise ValueError(f"all {lw.size} log-weights are -inf; the weighted shares are undefined")
        w = np.exp(lw - logsumexp(lw))
    zone = np.empty(len(xs), dtype=np.int64)
    for rows, d2 in _squared_distances(xs, c):
        zone[rows] = d2.argmin(axis=1)
    shares = np.bincount(zone, weights=w, minlength=len(c))
    return shares / shares.sum()


def mode_coverage(x: Any, centres: Any, radius: float) -> float:
    """Fraction of the ``K`` centres (shape ``(K, d)``) with at least one sample of ``x``
    (shape ``(N, d)``) at Euclidean distance ``<= radius``."""
    if not (math.isfinite(radius) and radius > 0):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    xs, c = _points_and_centres(x, centres)
    nearest = np.full(len(c), np.inf)
    for _, d2 in _squared_distances(xs, c):
        nearest = np.minimum(nearest, d2.min(axis=0))
    return float((nearest <= radius**2).mean())


# MCMC convergence
# --------------------------------------------------------------------------------------------


def _classic_rhat(chains: np.ndarray) -> np.ndarray:
    """Potential scale reduction of ``chains`` shaped ``(M, N, d)`` (no splitting, no ranks)."""
    n = chains.shape[1]
    within = chains.var(axis=1, ddof=1).mean(axis=0)
    between_over_n = chains.mean(axis=1).var(axis=0, ddof=1)
    var_plus = (n - 1) / n * within + between_over_n
    with np.errstate(divide="ignore", invalid="ignore"):
        rhat = np.sqrt(var_plus / within)
    # Constant chains: identical values everywhere mix trivially; different constants never do.
    return np.where(within > 0, rhat, np.where(between_over_n > 0, np.inf, 1.0))


def _rank_normalise(chains: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks (average ranks for ties), chain shape kept."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    m, n, d = chains.shape
    ranks = rankdata(chains.reshape(m * n, d), axis=0, method="average")
    return ndtri((ranks - 0.375) / (m * n + 0.25)).reshape(m, n, d)


def split_rhat(chains: Any) -> np.ndarray:
    """Rank-normalised split R-hat of each coordinate, shape ``(d,)``, float64.

    ``chains`` has shape ``(M, N, d)`` (M chains of N draws; ``(M, N)`` for one coordinate), with
    ``M >= 1`` and ``N >= 4``. Each chain is cut into two halves (the middle draw dropped when N is
    odd), all draws are replaced by the normal scores of their pooled ranks, and the classic
    ``sqrt(var_plus / W)`` is taken; the same is done for the folded draws ``|x - median|``, and
    the larger value is returned. Values near 1 (below ~1.01) mean the chains agree; chains stuck
    in different modes give large values. The statistic is invariant under monotone maps of each
    coordinate.
    """
    x = np.asarray(chains, dtype=np.float64)
    if x.ndim == 2:
        x = x[:, :, None]
    if x.ndim != 3:
        raise ValueError(f"chains must have shape (M, N, d) or (M, N), got {x.shape}")
    if x.shape[1] < 4:
        raise ValueError(f"split R-hat needs at least 4 draws per chain, got {x.shape[1]}")
    if not np.isfinite(x).all():
        raise ValueError(f"chains hold {int((~np.isfinite(x)).sum())} non-finite values")
    half = x.shape[1] // 2
    split = np.concatenate([x[:, :half], x[:, -half:]], axis=0)
    bulk = _classic_rhat(_rank_normalise(split))
    folded = np.abs(split - np.median(split.reshape(-1, split.shape[2]), axis=0))
    tail = _classic_rhat(_rank_normalise(folded))
    return np.maximum(bulk, tail)
