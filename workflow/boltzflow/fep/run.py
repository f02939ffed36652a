"""Targeted free-energy perturbation (TFEP) between two conformational states with a RegFlow map."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import pandas as pd
import torch

from boltzflow.couplings import as_points, cnf_pairs, ot_pairs
from boltzflow.evaluation import (
    md_free_energy,
    select_states,
    state_mask,
    tfep_estimate,
)
from boltzflow.flows import BodyFrame, InternalFrame, frame_fingerprint, frame_from_config, to_latent
from boltzflow.io import config_hash
from boltzflow.systems import backbone_dihedrals
from boltzflow.training import TrainSettings, fit_cnf, fit_flow, flow_architecture
from boltzflow.units import resolve_device

__all__ = [
    "run_tfep",
    "TFEPRun",
    "fit_state_map",
    "TFEPWork",
    "tfep_work",
]


EnergyFn = Callable[[np.ndarray], Any]
IndicatorFn = Callable[[np.ndarray], Any]


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

    ``x0``, ``x1``: ``(n, d)`` latent points of states A and B (:func:`boltzflow.couplings.ot_pairs`
    with ``x0``, or :func:`boltzflow.couplings.cnf_pairs` of a state CNF) in the frame of
    ``architecture["frame"]``; :func:`boltzflow.training.fit_flow` does the training, with a
    state-A point as the flow's input instead of a prior draw. The summary adds
    ``invertibility_state_a``: the round-trip error ``|g^-1(g(x0)) - x0|`` on (up to 10,000 of)
    the training inputs, where the map is used, next to fit_flow's report on prior draws.
    """

    if "frame" not in architecture:
        raise ValueError("the state map's architecture needs a 'frame'")
    dim = frame_from_config(architecture["frame"]).dim
    a = as_points(x0, "x0 (state A latent points)", dim)
    b = as_points(x1, "x1 (state B latent points)", dim)
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

    if isinstance(frame, (BodyFrame, InternalFrame)):
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


# --------------------------------------------------------------------------- the whole run


class TFEPRun(NamedTuple):
    """What :func:`run_tfep` produces: the estimates, the works and the trained state map."""

    table: pd.DataFrame  # one row per estimator: MD populations, TFEP with the RegFlow map
    work: TFEPWork
    state_map: Any
    history: pd.DataFrame
    summary: dict[str, Any]


def run_tfep(
    fep: Mapping[str, Any],
    flows: Mapping[str, Any],
    frame: Mapping[str, Any],
    *,
    dihedrals: pd.DataFrame,
    train_x: np.ndarray,
    test_x: np.ndarray,
    topology: Any,
    energy: EnergyFn,
    checkpoint_dir: str,
    log: logging.Logger | None = None,
) -> TFEPRun:
    """dF between the states ``fep["state_a"]`` and ``fep["state_b"]`` by MD populations and by TFEP.

    The MD estimate comes from the state populations of every frame's ``dihedrals``. The state map
    is trained on training frames of A and B only, without energies: exact-OT pairs between the
    two states (:func:`boltzflow.couplings.ot_pairs`), or, with ``fep["coupling"] == "cnf"``, the
    reflow pairs of a flow-matching CNF trained on them (:func:`boltzflow.training.fit_cnf`,
    :func:`boltzflow.couplings.cnf_pairs`), then RegFlow (:func:`fit_state_map`). The reduced
    ``energy`` enters only in the works of the test frames of A (:func:`tfep_work`).
    ``frame`` is the flow's frame config; ``flows`` the ``flows`` config section (architectures
    and invertibility); checkpoints go to ``checkpoint_dir`` (and ``checkpoint_dir + "-cnf"``).

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
    Dihedral tables are those of :mod:`boltzflow.systems.observables` (columns ``phi_<RES>``, ``psi_<RES>``
    in radians); a plain ``(N, 2)`` array holds (phi, psi) in radians.
    """
    log = log or logging.getLogger("boltzflow.fep")
    in_a_md, in_b_md = (state_mask(dihedrals, fep[key], name=key) for key in ("state_a", "state_b"))
    md = md_free_energy(in_a_md, in_b_md, n_boot=fep["n_boot"], seed=fep["seed"], block=fep["md_block_frames"])
    log.info("MD: dF = %.3f [%.3f, %.3f] kT from %d frames (%d in A, %d in B)", md["dF"], md["low"], md["high"],
             md["n"], md["n_a"], md["n_b"])

    xa, xb, _, _ = select_states(train_x, backbone_dihedrals(train_x, topology), fep["state_a"], fep["state_b"])
    log.info("training frames: %d in A, %d in B", len(xa), len(xb))
    x0, x1, _ = ot_pairs(to_latent(xb, frame), x0=to_latent(xa, frame), batch_size=fep["ot_batch_size"],
                         n_pairs=fep["n_pairs"], seed=fep["seed"], dtype=np.float64, log=log)
    device = resolve_device(fep["device"])
    if fep["coupling"] == "cnf":
        cnf = fep["cnf"]
        teacher, teacher_history, _ = fit_cnf(
            x1, x0=x0, hidden=cnf["hidden"], layers=cnf["layers"],
            settings=TrainSettings.from_config({**cnf["train"], "seed": fep["seed"]}),
            checkpoint_dir=checkpoint_dir + "-cnf", identity=config_hash({"fep": fep, "n": len(x0)}),
            device=device, log=log)
        x0, x1, _ = cnf_pairs(teacher, x0=x0, batch_size=cnf["batch_size"], method=cnf["method"],
                              atol=cnf["atol"], rtol=cnf["rtol"], log=log)
        log.info("reflow state pairs from the state CNF: %d (flow-matching loss %.4g at the end)", len(x0),
                 float(teacher_history["loss"].iloc[-1]))
    architecture = flow_architecture(fep["architecture"], flows[fep["architecture"]], frame)
    settings = TrainSettings.from_config({**fep["train"], "seed": fep["seed"]})
    identity = config_hash({"fep": fep, "architecture": {**architecture, "frame": frame_fingerprint(frame)},
                            "n": len(x0)})
    state_map, history, summary = fit_state_map(x0, x1, architecture, settings, fep["regflow"], checkpoint_dir,
                                                identity=identity, device=device,
                                                invertibility=flows["invertibility"], log=log)

    xa_test, _, _, _ = select_states(test_x, backbone_dihedrals(test_x, topology), fep["state_a"], fep["state_b"])

    def in_b(x: np.ndarray) -> np.ndarray:
        return state_mask(backbone_dihedrals(np.asarray(x, dtype=np.float32), topology), fep["state_b"],
                          name="state_b")

    work = tfep_work(state_map, xa_test, energy, in_b)
    tfep = tfep_estimate(work.work, n_boot=fep["n_boot"], seed=fep["seed"])
    log.info("TFEP: dF = %.3f [%.3f, %.3f] kT from %d test frames of A (ESS %.3f; %d mapped outside B, "
             "%d non-finite)", tfep["dF"], tfep["low"], tfep["high"], tfep["n"], tfep["ess"], work.n_outside_b,
             work.n_nonfinite)
    table = pd.DataFrame([
        {"estimator": "MD populations", "dF": md["dF"], "low": md["low"], "high": md["high"], "n": md["n"],
         "ess": np.nan, "n_outside_b": 0, "n_nonfinite": 0},
        {"estimator": "TFEP (RegFlow map)", "dF": tfep["dF"], "low": tfep["low"], "high": tfep["high"],
         "n": tfep["n"], "ess": tfep["ess"], "n_outside_b": work.n_outside_b, "n_nonfinite": work.n_nonfinite},
    ])
    return TFEPRun(table, work, state_map, history, summary)
