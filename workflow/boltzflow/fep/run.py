"""Targeted free-energy perturbation (TFEP) between two conformational states with a RegFlow map.

The question: what is the free-energy difference between two metastable states A and B of one
molecule (for alanine dipeptide, the ``beta`` and ``alpha_R`` basins), computed from MD samples of
the two states *without* sampling the transition between them? Following the RegFlow paper
(Rehman et al., 2025, arXiv 2506.01158), an invertible flow ``M`` is trained to carry state A onto
state B by plain l2 regression on exact optimal-transport pairs ``(x_A, x_B)`` of MD samples of
the two states -- no energies enter training -- and the energy is used only afterwards, in the
targeted (Zwanzig) estimator of Jarzynski (2002):

    dF = F_B - F_A = -log(Z_B / Z_A),        Z_S = integral over S of exp(-u(x)) dx,

    dF = -log E_{x ~ p_A}[ exp(-W(x)) ],      W(x) = u(M(x)) - u(x) - log|det J_M(x)|,

with ``W = +inf`` when ``M(x)`` lands outside B. The identity holds for any bijection ``M`` whose
image of A covers B (substitute ``x' = M(x)`` in ``Z_B``); the closer ``M`` pushes ``p_A`` onto
``p_B`` the smaller the variance of ``exp(-W)``, and an exact map gives a constant ``W = dF``.
The MD reference is ``-log(p_B / p_A)`` from the state populations of an equilibrium run
(:func:`md_free_energy`).

Coordinates and the Jacobian
----------------------------
All densities of the project live on the centroid-free hyperplane, in orthonormal coordinates
``c`` (see :mod:`boltzflow.flows.cartesian`); the flow acts on the latent ``y`` of its frame
(body, centroid or vector frame), and ``frame.log_jacobian(y)`` is ``log|dy/dc|`` at ``y`` (for
the body frame this includes the orientation measure, see :mod:`boltzflow.flows.body`). The map
on the hyperplane is ``c_A -> y_A -> y_B = g(y_A) -> c_B``, so by the chain rule

    dc_B/dc_A = (dc_B/dy_B) (dy_B/dy_A) (dy_A/dc_A),

    log|det J_M| = log|det J_g(y_A)| + frame.log_jacobian(y_A) - frame.log_jacobian(y_B).

The last two terms cancel for the centroid and vector frames (constant ``log|dy/dc|``) but not
for the body frame, whose ``log|dy/dc|`` depends on the reference-atom geometry. For the body
frame the mapped configuration keeps the orientation measure: ``M`` changes the internal
coordinates and leaves the orientation alone, and the configurations handed to the energy are
built in the body orientation (``rotate=False``), which is right for every energy and state
indicator that is invariant under rigid motions (molecules in vacuum or implicit solvent).

States
------
A state is either the name of one of the backbone basins of
:func:`boltzflow.evaluation.conformational_states` (``alpha_R``, ``beta``, ``alpha_L``,
``C7ax``; the classification is then exactly that function's), or a union of boxes in the
(phi, psi) plane of one residue, in degrees: ``{"phi": [lo, hi], "psi": [lo, hi]}`` means
``lo < angle <= hi`` after the angle is wrapped into ``(-180, 180]`` (rounded to 1e-4 degree as
in :mod:`boltzflow.evaluation.states`); an interval with ``lo > hi`` runs through 180, e.g.
``psi: [50, -120]`` is ``psi > 50 or psi <= -120``. The defaults for alanine dipeptide are
``A = "beta"`` (phi <= 0 and (psi <= -120 or psi > 50)) and ``B = "alpha_R"`` (phi <= 0 and
-120 < psi <= 50), the two well-populated basins; as boxes they are
``{"phi": [-180, 0], "psi": [50, -120]}`` and ``{"phi": [-180, 0], "psi": [-120, 50]}``.
Dihedral tables are those of :mod:`boltzflow.observables` (columns ``phi_<RES>``, ``psi_<RES>``
in radians); a plain ``(N, 2)`` array holds (phi, psi) in radians.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch

from boltzflow.cnf import VelocityField, flow_matching_loss, integrate
from boltzflow.couplings import ot_permutation
from boltzflow.evaluation import (
    DEFAULT_STATE_A,
    DEFAULT_STATE_B,
    StateBox,
    StateDefinition,
    md_free_energy,
    parse_state,
    select_states,
    state_mask,
    tfep_estimate,
)
from boltzflow.flows import BodyFrame, frame_from_config
from boltzflow.training import fit_flow, train
from boltzflow.units import resolve_device

__all__ = [
    "fit_state_cnf",
    "state_cnf_pairs",
    "DEFAULT_STATE_A",
    "DEFAULT_STATE_B",
    "StateBox",
    "StateDefinition",
    "parse_state",
    "state_mask",
    "select_states",
    "state_pairs",
    "fit_state_map",
    "TFEPWork",
    "tfep_work",
    "tfep_estimate",
    "md_free_energy",
]


EnergyFn = Callable[[np.ndarray], Any]
IndicatorFn = Callable[[np.ndarray], Any]


# --------------------------------------------------------------------------- pairs


def _points(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    a = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    a = a.astype(np.float64, copy=False)
    expected = "(n, d)" if dim is None else f"(n, {dim})"
    if a.ndim != 2 or (dim is not None and a.shape[1] != dim):
        raise ValueError(f"{name} has shape {a.shape}, expected {expected}")
    if len(a) == 0:
        raise ValueError(f"{name} is empty: the state holds no point")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has {int((~np.isfinite(a)).any(axis=1).sum())} rows with non-finite values")
    return a


class _Stream:
    """Indices into ``n`` points, one reshuffled pass after another (seeded)."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.order, self.pos = n, rng, rng.permutation(n), 0

    def take(self, k: int) -> np.ndarray:
        out = []
        while k > 0:
            if self.pos == self.n:
                self.order, self.pos = self.rng.permutation(self.n), 0
            step = min(k, self.n - self.pos)
            out.append(self.order[self.pos:self.pos + step])
            self.pos += step
            k -= step
        return np.concatenate(out)


def state_pairs(xa_latent: Any, xb_latent: Any, *, batch_size: int, seed: int = 0, n_pairs: int | None = None,
                log: logging.Logger | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact-OT pairs ``(x0, x1)`` between latent points of state A ``(N_A, d)`` and B ``(N_B, d)``.

    Each state's points are drawn as a stream of seeded random passes (a new shuffle after each
    pass); batches of ``batch_size`` A points and as many B points are matched by the exact
    optimal assignment for the squared Euclidean cost
    (:func:`boltzflow.couplings.ot_permutation`, which checks that POT's plan is a permutation).
    ``n_pairs`` defaults to ``max(N_A, N_B)``, so every point of the larger state is used once
    and the smaller state's points are reused with other partners. Returns float64 arrays
    ``(n_pairs, d)``; ``x0[i]`` (state A) is paired with ``x1[i]`` (state B).
    """

    log = log or logging.getLogger("boltzflow.fep")
    xa = _points(xa_latent, "state A latent points")
    xb = _points(xb_latent, "state B latent points", xa.shape[1])
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n_pairs = max(len(xa), len(xb)) if n_pairs is None else int(n_pairs)
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    rng = np.random.default_rng(seed)
    stream_a, stream_b = _Stream(len(xa), rng), _Stream(len(xb), rng)
    out0, out1 = [], []
    cost_random = cost_ot = 0.0
    done = 0
    while done < n_pairs:
        take = min(batch_size, n_pairs - done)
        a, b = xa[stream_a.take(take)], xb[stream_b.take(take)]
        perm = ot_permutation(a, b)[0] if take > 1 else np.zeros(1, dtype=np.int64)
        cost_random += float(np.sum((a - b) ** 2))
        cost_ot += float(np.sum((a - b[perm]) ** 2))
        out0.append(a)
        out1.append(b[perm])
        done += take
    log.info("%d OT state pairs in batches of %d: mean squared distance %.4g (random pairing %.4g)", done,
             batch_size, cost_ot / done, cost_random / done)
    return np.concatenate(out0), np.concatenate(out1)


# --------------------------------------------------------------------------- the map


def _model_dtype(model: Any) -> torch.dtype:
    try:
        return next(model.parameters()).dtype
    except (AttributeError, StopIteration):
        return torch.float64


def fit_state_map(
    x0: Any,
    x1: Any,
    architecture: Mapping[str, Any],
    settings: Any,
    regflow_options: Mapping[str, Any] | None,
    checkpoint_dir: str | Path,
    *,
    identity: str = "",
    device: str = "cpu",
    invertibility: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> tuple[Any, pd.DataFrame, dict[str, Any]]:
    """A coupling flow ``g`` trained by RegFlow regression ``g(x0) ~ x1`` on state pairs.

    ``x0``, ``x1``: ``(n, d)`` latent points of states A and B (:func:`state_pairs`) in the frame
    of ``architecture["frame"]`` (a :func:`~boltzflow.flows.build_flow` config); ``settings``: a
    :class:`~boltzflow.training.TrainSettings`; ``regflow_options``: ``regulariser``,
    ``lambda_reg``, ``target_noise`` as in :func:`boltzflow.regflow.fit_flow`, which does the
    training (the flow's input is simply a state-A point instead of a prior draw). The summary
    adds ``invertibility_state_a``: the round-trip error ``|g^-1(g(x0)) - x0|`` on (up to 10,000
    of) the training inputs, where the map is used, next to fit_flow's report on prior draws.
    """

    if "frame" not in architecture:
        raise ValueError("the state map's architecture needs a 'frame'")
    dim = frame_from_config(architecture["frame"]).dim
    a = _points(x0, "x0 (state A latent points)", dim)
    b = _points(x1, "x1 (state B latent points)", dim)
    if a.shape != b.shape:
        raise ValueError(f"x1 has shape {b.shape}, expected {a.shape} like x0 (one B point per A point)")
    model, history, summary = fit_flow("regflow", architecture, settings, checkpoint_dir, pairs=(a, b),
                                       regflow=regflow_options, invertibility=invertibility, identity=identity,
                                       device=device, log=log or logging.getLogger("boltzflow.fep"))
    with torch.no_grad():
        probe = torch.as_tensor(a[:10_000], dtype=model.dtype)
        y, _ = model(probe)
        back, _ = model.inverse(y)
        err = (back.to(torch.float64) - probe.to(torch.float64)).abs()
    finite = torch.isfinite(err)
    summary = {**summary, "invertibility_state_a": {
        "n": int(len(probe)),
        "max_error": float(err[finite].max()) if finite.any() else float("inf"),
        "mean_error": float(err[finite].mean()) if finite.any() else float("inf"),
        "nonfinite": int((~finite).any(dim=1).sum())}}
    return model, history, summary


def fit_state_cnf(x0: Any, x1: Any, *, hidden: int, layers: int, settings: Any, checkpoint_dir: str | Path,
                  identity: str = "", device: str = "cpu", log: logging.Logger | None = None):
    """A flow-matching CNF that carries state A onto state B (a teacher for the state map).

    Trained by conditional flow matching on the pairs ``(x0, x1)`` (A and B latent points, e.g.
    the exact-OT pairs of :func:`state_pairs`, so the straight interpolants are short). Unlike a
    regression of a one-step map onto those pairs, whose optimum is the blurred conditional mean
    ``E[x1 | x0]``, the flow of the learned marginal velocity transports the distribution of A
    onto that of B; integrating it gives a deterministic coupling a flow can fit (reflow).
    Returns the EMA model on the CPU, the history and a summary.
    """

    a = torch.as_tensor(_points(x0, "x0 (state A latent points)"), dtype=torch.float32)
    b = torch.as_tensor(_points(x1, "x1 (state B latent points)", a.shape[1]), dtype=torch.float32)
    if a.shape != b.shape:
        raise ValueError(f"x1 has shape {tuple(b.shape)}, expected {tuple(a.shape)} like x0")
    torch.manual_seed(settings.seed)
    where = resolve_device(device)
    model = VelocityField(a.shape[1], hidden=hidden, layers=layers).to(where)

    def objective(net, batch, generator):
        loss = flow_matching_loss(net, batch["x0"], batch["x1"], generator=generator)
        return loss, {"flow_matching": float(loss.detach())}

    trained, history, summary = train(model, objective, {"x0": a.to(where), "x1": b.to(where)}, settings,
                                      checkpoint_dir, identity=identity, log=log or logging.getLogger("boltzflow.fep"))
    return trained.cpu(), history, summary


def state_cnf_pairs(model: Any, xa_latent: Any, *, batch_size: int = 4096, method: str = "dopri5",
                    atol: float = 1e-5, rtol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Reflow pairs ``(x_A, phi(x_A))`` of a state CNF (:func:`fit_state_cnf`), float64."""

    a = torch.as_tensor(_points(xa_latent, "xa_latent"), dtype=torch.float32)
    with torch.no_grad():
        b = integrate(model, a, method=method, atol=atol, rtol=rtol, batch_size=batch_size)
    return a.numpy().astype(np.float64), b.numpy().astype(np.float64)


# --------------------------------------------------------------------------- work and estimate


class TFEPWork(NamedTuple):
    """Works ``W`` (float64 ``(N,)``, ``+inf`` for excluded samples) and why samples were excluded."""

    work: np.ndarray
    n_nonfinite: int  # the map, its Jacobian or an energy gave NaN or an infinity
    n_outside_b: int  # the mapped configuration is not in state B


def _values(out: Any, n: int, what: str) -> np.ndarray:
    a = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    a = a.reshape(-1) if a.ndim == 2 and a.shape[1] == 1 else a
    if a.shape != (n,):
        raise ValueError(f"{what} returned shape {a.shape}, expected ({n},)")
    return a


def _from_latent(frame: Any, y: torch.Tensor) -> torch.Tensor:

    if isinstance(frame, BodyFrame):
        return frame.from_latent(y, rotate=False)  # the orientation is not part of the map
    return frame.from_latent(y)


@torch.no_grad()
def tfep_work(
    map_flow: Any,
    x_a: Any,
    energy_fn: EnergyFn,
    in_b_fn: IndicatorFn | None = None,
    *,
    energy_b_fn: EnergyFn | None = None,
    batch_size: int = 4096,
) -> TFEPWork:
    """Generalised works ``W(x) = u_B(M(x)) - u_A(x) - log|det J_M(x)|`` of state-A samples.

    ``map_flow``: a trained state map (:func:`fit_state_map`) or anything with a ``frame`` and a
    call ``map_flow(y) -> (y', log|det dy'/dy|)`` on latent batches. ``x_a``: ``(N, D)`` positions
    (nm; or plain vectors with a vector frame) of state A. ``energy_fn``: reduced energy (kT) of
    a float64 ``(B, D)`` array of positions, returning ``(B,)``; the same function is used for
    both ends unless ``energy_b_fn`` gives ``u_B`` (two Hamiltonians, e.g. analytic test wells).
    ``in_b_fn``: the boolean indicator of state B from mapped positions (``None``: no restriction).
    The Jacobian on the hyperplane is ``log|det J_g(y_A)| + frame.log_jacobian(y_A) -
    frame.log_jacobian(y_B)`` (module docstring). ``W = +inf`` where the mapped point is not in B
    or where anything is non-finite; the two counts come back with the works (float64).
    """
    frame = map_flow.frame
    dim = int(frame.cartesian_dim)
    x = x_a.detach().cpu().numpy() if isinstance(x_a, torch.Tensor) else np.asarray(x_a)
    x = x.astype(np.float64, copy=False)
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"x_a has shape {x.shape}, expected (N, {dim}) for the map's frame")
    if len(x) == 0:
        raise ValueError("x_a is empty: state A holds no sample")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    energy_b_fn = energy_b_fn or energy_fn
    dtype = _model_dtype(map_flow)
    work = np.full(len(x), np.inf)
    n_nonfinite = n_outside = 0
    for start in range(0, len(x), batch_size):
        xs = x[start:start + batch_size]
        n = len(xs)
        good = np.isfinite(xs).all(axis=1)
        xt = torch.as_tensor(np.where(good[:, None], xs, 0.0))
        y_a = frame.to_latent(xt)
        y_b, logdet = map_flow(y_a.to(dtype))
        y_b, logdet = y_b.to(torch.float64), logdet.to(torch.float64)
        log_j = logdet + frame.log_jacobian(y_a) - frame.log_jacobian(y_b)
        good &= (torch.isfinite(y_a).all(dim=1) & torch.isfinite(y_b).all(dim=1) & torch.isfinite(log_j)).numpy()
        idx = np.flatnonzero(good)
        w = np.full(n, np.inf)
        if idx.size:
            xb = _from_latent(frame, y_b[idx]).numpy()
            u_a = _values(energy_fn(xs[idx]), idx.size, "energy_fn").astype(np.float64)
            u_b = _values(energy_b_fn(xb), idx.size, "energy_b_fn" if energy_b_fn is not energy_fn
                          else "energy_fn").astype(np.float64)
            w_idx = u_b - u_a - log_j.numpy()[idx]
            finite = np.isfinite(w_idx)
            inside = np.ones(idx.size, dtype=bool)
            if in_b_fn is not None:
                inside = _values(in_b_fn(xb), idx.size, "in_b_fn")
                if inside.dtype != np.bool_:
                    raise ValueError(f"in_b_fn must return booleans, got dtype {inside.dtype}")
            n_outside += int((finite & ~inside).sum())
            good[idx[~finite]] = False
            keep = finite & inside
            w[idx[keep]] = w_idx[keep]
        n_nonfinite += int((~good).sum())
        work[start:start + n] = w
    return TFEPWork(work, n_nonfinite, n_outside)
