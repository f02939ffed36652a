"""Conformational states of peptide residues from their backbone dihedrals: the four basins that
tile the (phi, psi) torus (alpha_R, beta, alpha_L, C7ax, plus the phi>0 union reported by the MD
convergence check) and user-defined states as unions of (phi, psi) boxes, read from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from boltzflow.evaluation.arrays import _array

__all__ = [
    "STATES",
    "PHI_POSITIVE",
    "ROW_STATES",
    "DEFAULT_STATE_A",
    "DEFAULT_STATE_B",
    "residues",
    "conformational_states",
    "phi_positive",
    "StateBox",
    "StateDefinition",
    "parse_state",
    "state_mask",
    "select_states",
]

STATES = ("alpha_R", "beta", "alpha_L", "C7ax")
PHI_POSITIVE = "phi>0"
ROW_STATES = STATES + (PHI_POSITIVE,)

DEFAULT_STATE_A = "beta"
DEFAULT_STATE_B = "alpha_R"


# --------------------------------------------------------------------------- basins


def residues(dihedrals: pd.DataFrame) -> list[str]:
    """Residue labels (e.g. ``ALA2``) that have both a ``phi_`` and a ``psi_`` column, in order."""
    return [c[4:] for c in dihedrals.columns if c.startswith("phi_") and f"psi_{c[4:]}" in dihedrals]


def _wrap_degrees(radians: Any, name: str) -> np.ndarray:
    """Radians -> degrees in (-180, 180]: the one rule by which every state here reads an angle."""
    values = np.asarray(radians, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"dihedral column {name!r} has {int(np.sum(~np.isfinite(values)))} non-finite value(s)")
    # Rounding to 1e-4 degree removes the noise of radian round trips and of float32 storage
    # (float32(pi) is 180.0000025 degrees), so an angle meant as a box edge (or as +-180) is
    # classified by the documented rule; 1e-4 degree is far below any physical resolution.
    deg = np.round(np.degrees(values), 4)
    return deg - 360.0 * np.ceil((deg - 180.0) / 360.0)  # into (-180, 180]


def _pairs(dihedrals: pd.DataFrame) -> list[str]:
    found = residues(dihedrals)
    if not found:
        raise ValueError(
            "the dihedral table has no residue with both phi_<RES> and psi_<RES> columns "
            f"(has {list(dihedrals.columns)})"
        )
    return found


def conformational_states(dihedrals: pd.DataFrame) -> pd.DataFrame:
    """The basin of every frame for every residue with phi and psi: columns ``state_<RES>``.

    Values are a pandas Categorical over :data:`STATES`; the index is that of ``dihedrals``.

    Angles are read in degrees, rounded to 1e-4 degree (so float32 noise does not move an angle
    across a box edge) and wrapped into ``(-180, 180]``. The basins are

    =========  ==================================================  =================================
    state      box (degrees)                                       what it is
    =========  ==================================================  =================================
    alpha_R    phi <= 0 and -120 < psi <= 50                       right-handed helix basin
    beta       phi <= 0 and (psi <= -120 or psi > 50)              C5 / C7eq / PII (extended) region
    alpha_L    phi > 0 and psi >= 0                                left-handed helix basin
    C7ax       phi > 0 and psi < 0                                 C7ax basin
    =========  ==================================================  =================================

    The four boxes tile the torus, so every frame has exactly one state.
    """
    out = {}
    for res in _pairs(dihedrals):
        phi = _wrap_degrees(dihedrals[f"phi_{res}"], f"phi_{res}")
        psi = _wrap_degrees(dihedrals[f"psi_{res}"], f"psi_{res}")
        code = np.where(
            phi <= 0.0,
            np.where((psi > -120.0) & (psi <= 50.0), 0, 1),  # alpha_R, beta
            np.where(psi >= 0.0, 2, 3),  # alpha_L, C7ax
        )
        out[f"state_{res}"] = pd.Categorical.from_codes(code, categories=list(STATES))
    return pd.DataFrame(out, index=dihedrals.index)


def phi_positive(dihedrals: pd.DataFrame) -> pd.DataFrame:
    """``phi > 0`` (after wrapping into (-180, 180] degrees) per residue: bool columns ``phi_positive_<RES>``.

    Same residues as :func:`conformational_states`; the union alpha_L + C7ax of that function.
    """
    return pd.DataFrame(
        {f"phi_positive_{res}": _wrap_degrees(dihedrals[f"phi_{res}"], f"phi_{res}") > 0.0
         for res in _pairs(dihedrals)},
        index=dihedrals.index,
    )


# --------------------------------------------------------------------------- states


def _interval(value: Any, what: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be a pair [lo, hi] of degrees, got {value!r}") from err
    if not (-180.0 <= lo <= 180.0 and -180.0 <= hi <= 180.0):
        raise ValueError(f"{what} = [{lo}, {hi}] must lie within [-180, 180] degrees")
    if lo == hi:
        raise ValueError(f"{what} = [{lo}, {hi}] is empty (lo == hi)")
    return lo, hi


def _in_interval(deg: np.ndarray, lo: float, hi: float) -> np.ndarray:
    # (lo, hi] on the circle; lo > hi wraps through 180. An interval starting at -180 includes
    # nothing at -180 itself, which reads as 180 after wrapping.
    if lo < hi:
        return (deg > lo) & (deg <= hi)
    return (deg > lo) | (deg <= hi)


@dataclass(frozen=True)
class StateBox:
    """A box ``phi in (lo, hi]`` and ``psi in (lo, hi]`` in degrees; an interval with
    ``lo > hi`` runs through 180 (angles wrapped as in :func:`conformational_states`).

    >>> box = StateBox(phi=(-180, 0), psi=(50, -120))  # the beta basin
    >>> box.contains(np.array([-60.0, -60.0]), np.array([140.0, -40.0])).tolist()
    [True, False]
    """

    phi: tuple[float, float]
    psi: tuple[float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "phi", _interval(self.phi, "phi"))
        object.__setattr__(self, "psi", _interval(self.psi, "psi"))

    def contains(self, phi_deg: np.ndarray, psi_deg: np.ndarray) -> np.ndarray:
        """Boolean membership of angles already wrapped into (-180, 180] degrees."""
        return _in_interval(phi_deg, *self.phi) & _in_interval(psi_deg, *self.psi)


@dataclass(frozen=True)
class StateDefinition:
    """A named state of one residue: a basin name of :data:`STATES` or a union of
    :class:`StateBox` es. ``residue`` (e.g. ``ALA2``) may be left ``None`` when the dihedral
    table has a single residue with phi and psi.

    >>> state = parse_state({"phi": [-180, 0], "psi": [-120, 50]}, "helix")
    >>> state.name, len(state.boxes), state.basin
    ('helix', 1, None)
    >>> state_mask(np.radians([[-60.0, -45.0], [60.0, 45.0]]), state).tolist()
    [True, False]
    """

    name: str
    boxes: tuple[StateBox, ...] = ()
    basin: str | None = None
    residue: str | None = None

    def __post_init__(self) -> None:

        if (self.basin is None) == (not self.boxes):
            raise ValueError(f"state {self.name!r} needs either a basin name or at least one box, not both")
        if self.basin is not None and self.basin not in STATES:
            raise ValueError(f"state {self.name!r}: unknown basin {self.basin!r}; known: {', '.join(STATES)}")


def _box(spec: Any, name: str) -> StateBox:
    if isinstance(spec, StateBox):
        return spec
    if not isinstance(spec, Mapping) or set(spec) != {"phi", "psi"}:
        raise ValueError(f"state {name!r}: a box is {{'phi': [lo, hi], 'psi': [lo, hi]}} in degrees, got {spec!r}")
    try:
        return StateBox(spec["phi"], spec["psi"])
    except ValueError as err:
        raise ValueError(f"state {name!r}: {err}") from err


def parse_state(spec: Any, name: str | None = None) -> StateDefinition:
    """A :class:`StateDefinition` from a config entry.

    Accepted: a basin name (``"beta"``); one box ``{"phi": [lo, hi], "psi": [lo, hi]}``; a list of
    boxes (their union); a mapping with ``boxes`` (a box or a list) or ``basin`` and optionally
    ``residue`` and ``name``; a :class:`StateDefinition` (returned as is).
    """
    if isinstance(spec, StateDefinition):
        return spec
    if isinstance(spec, str):
        return StateDefinition(name or spec, basin=spec)
    if isinstance(spec, StateBox):
        return StateDefinition(name or "state", boxes=(spec,))
    if isinstance(spec, Mapping):
        if set(spec) == {"phi", "psi"}:
            label = name or "state"
            return StateDefinition(label, boxes=(_box(spec, label),))
        unknown = sorted(set(spec) - {"name", "boxes", "basin", "residue"})
        if unknown:
            raise ValueError(f"state {name or spec.get('name')!r}: unknown key(s) {', '.join(map(str, unknown))}; "
                             "known: name, boxes, basin, residue (or a box with phi and psi)")
        label = str(spec.get("name") or name or spec.get("basin") or "state")
        boxes = spec.get("boxes", ())
        if isinstance(boxes, (Mapping, StateBox)):
            boxes = [boxes]
        return StateDefinition(label, boxes=tuple(_box(b, label) for b in boxes), basin=spec.get("basin"),
                               residue=spec.get("residue"))
    if isinstance(spec, Sequence) and spec:
        label = name or "state"
        return StateDefinition(label, boxes=tuple(_box(b, label) for b in spec))
    raise ValueError(f"state {name!r}: cannot read a state definition from {spec!r}")


def _angles(dihedrals: Any, state: StateDefinition) -> tuple[pd.DataFrame, str]:
    """The (phi, psi) table of the state's residue: columns ``phi_<RES>``, ``psi_<RES>``."""

    if isinstance(dihedrals, pd.DataFrame):
        found = residues(dihedrals)
        if state.residue is not None:
            if state.residue not in found:
                raise ValueError(f"state {state.name!r}: residue {state.residue!r} has no phi_/psi_ columns "
                                 f"(residues with both: {found})")
            res = state.residue
        elif len(found) == 1:
            res = found[0]
        else:
            raise ValueError(f"state {state.name!r}: the dihedral table has residues {found}; "
                             "say which one the state is defined on ('residue')")
        return dihedrals[[f"phi_{res}", f"psi_{res}"]].reset_index(drop=True), res
    a = _array(dihedrals, dtype=None)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"state {state.name!r}: dihedrals must be a table with phi_<RES>/psi_<RES> columns or "
                         f"an array of shape (N, 2) of (phi, psi) in radians, got shape {a.shape}")
    res = state.residue or "RES"
    return pd.DataFrame({f"phi_{res}": a[:, 0], f"psi_{res}": a[:, 1]}), res


def state_mask(dihedrals: Any, state_def: Any, *, name: str | None = None) -> np.ndarray:
    """Which frames lie in the state: a boolean array ``(N,)``.

    ``dihedrals``: a dihedral table (:func:`boltzflow.systems.observables.backbone_dihedrals`) or an
    ``(N, 2)`` array of (phi, psi) in radians; ``state_def``: anything :func:`parse_state` reads.
    """

    state = parse_state(state_def, name)
    table, res = _angles(dihedrals, state)
    if state.basin is not None:
        labels = conformational_states(table)[f"state_{res}"]
        return np.asarray(labels == state.basin, dtype=bool)
    phi = _wrap_degrees(table[f"phi_{res}"], f"phi_{res}")
    psi = _wrap_degrees(table[f"psi_{res}"], f"psi_{res}")
    mask = np.zeros(len(table), dtype=bool)
    for box in state.boxes:
        mask |= box.contains(phi, psi)
    return mask


def select_states(x: Any, dihedrals: Any, state_a: Any = DEFAULT_STATE_A, state_b: Any = DEFAULT_STATE_B
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The frames of ``x`` ``(N, D)`` in state A and in state B, and the two masks.

    Raises ``ValueError`` naming the state when a state holds no frame, and when the two states
    overlap (a frame in both would make the free-energy difference ill-defined).
    """
    x = np.asarray(x)
    labels = {key: parse_state(spec, spec if isinstance(spec, str) else key)
              for key, spec in (("A", state_a), ("B", state_b))}
    masks = {}
    for key, state in labels.items():
        mask = state_mask(dihedrals, state)
        if len(mask) != len(x):
            raise ValueError(f"{len(x)} frames but {len(mask)} rows of dihedrals")
        if not mask.any():
            raise ValueError(f"state {key} ({state.name!r}) is empty: no frame among {len(x)} falls in it")
        masks[key] = mask
    both = int((masks["A"] & masks["B"]).sum())
    if both:
        raise ValueError(f"states A ({labels['A'].name!r}) and B ({labels['B'].name!r}) overlap: "
                         f"{both} frames are in both")
    return x[masks["A"]], x[masks["B"]], masks["A"], masks["B"]
