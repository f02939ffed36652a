"""Convergence of equilibrium MD data: for one or more independent chains, how well the frames pin
down the population of each backbone basin (:func:`boltzflow.evaluation.conformational_states`,
plus the phi>0 union), with block-bootstrap intervals, and whether independent parts of the data
agree. Everything here is plain numpy/pandas and deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Sequence

import numpy as np
import pandas as pd

from boltzflow.evaluation import (
    PHI_POSITIVE,
    STATES,
    conformational_states,
)
from boltzflow.evaluation.diagnostics import integrated_autocorrelation_time
from boltzflow.evaluation.states import _pairs

__all__ = [
    "align_inputs",
    "bootstrap_population",
    "convergence_curves",
    "convergence_report",
    "halves_agreement",
    "populations_vs_time",
    "state_populations",
]


BLOCK_TAUS = 5.0  # automatic block length, in units of the integrated autocorrelation time
MAX_BLOCKS = 2000  # the automatic block length is raised so there are at most this many blocks
_DRAWS_PER_CHUNK = 4_000_000  # bootstrap indices held in memory at once


def _indicators(states: pd.DataFrame) -> list[tuple[str, str, np.ndarray]]:
    """(residue, state, 0/1 float array) for every row of the report, in report order."""
    cols = [c for c in states.columns if c.startswith("state_")]
    if not cols:
        raise ValueError(f"no state_<RES> columns in the states table (has {list(states.columns)})")
    rows = []
    for col in cols:
        res = col[len("state_"):]
        values = states[col].astype(object).to_numpy()
        unknown = set(pd.unique(values)) - set(STATES)
        if unknown:
            raise ValueError(f"column {col!r} has unknown state(s) {sorted(map(str, unknown))}")
        for state in STATES:
            rows.append((res, state, (values == state).astype(np.float64)))
        rows.append((res, PHI_POSITIVE, np.isin(values, ("alpha_L", "C7ax")).astype(np.float64)))
    return rows


# --------------------------------------------------------------------------- chains


class _Chains:
    """Frames grouped into chains: ``order`` sorts rows into (replica, time); ``lengths`` per chain."""

    def __init__(self, replica: Any, time_ps: Any):
        replica = np.asarray(replica)
        time_ps = np.asarray(time_ps, dtype=np.float64)
        if replica.shape != time_ps.shape or replica.ndim != 1:
            raise ValueError(
                f"replica and time_ps must be 1-D of the same length, got {replica.shape} and {time_ps.shape}"
            )
        if len(replica) == 0:
            raise ValueError("no frames: the convergence report needs at least one frame")
        if not np.issubdtype(replica.dtype, np.integer):
            if not (np.issubdtype(replica.dtype, np.number) and np.all(replica == np.round(replica))):
                raise ValueError(f"replica must hold integer chain ids, got dtype {replica.dtype}")
            replica = replica.astype(np.int64)
        if not np.all(np.isfinite(time_ps)):
            raise ValueError(f"time_ps has {int(np.sum(~np.isfinite(time_ps)))} non-finite value(s)")
        self.order = np.lexsort((time_ps, replica))
        rep, t = replica[self.order], time_ps[self.order]
        self.replicas, starts, self.lengths = np.unique(rep, return_index=True, return_counts=True)
        same_chain = rep[1:] == rep[:-1]
        if np.any(same_chain & (t[1:] == t[:-1])):
            i = int(np.flatnonzero(same_chain & (t[1:] == t[:-1]))[0])
            raise ValueError(
                f"replica {rep[i]} has two frames at time_ps={t[i]}: frames of one chain must have "
                "distinct times"
            )
        self.time_ps = t
        self.starts = starts
        diffs = [np.median(np.diff(t[s : s + n])) for s, n in zip(starts, self.lengths) if n > 1]
        default_dt = float(np.median(diffs)) if diffs else 0.0
        self.spacing_ps = np.array(
            [np.median(np.diff(t[s : s + n])) if n > 1 else default_dt for s, n in zip(starts, self.lengths)]
        )

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())

    def sort(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values)[self.order]

    def subset(self, keep: Sequence[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
        """Positions (in sorted order) and chain lengths of frames ``[a, b)`` of chains ``c``."""
        keep = [(c, a, b) for c, a, b in keep if b > a]
        if not keep:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        idx = np.concatenate([self.starts[c] + np.arange(a, b) for c, a, b in keep])
        return idx, np.array([b - a for _, a, b in keep], dtype=np.int64)

    def prefix(self, fraction: float) -> tuple[np.ndarray, np.ndarray, float]:
        """The first ``ceil(n * fraction)`` frames of every chain, and their aggregate time (ps)."""
        keep, time = [], 0.0
        for c, n in enumerate(self.lengths):
            k = max(1, min(int(n), math.ceil(n * fraction - 1e-9)))
            keep.append((c, 0, k))
            s = self.starts[c]
            time += self.time_ps[s + k - 1] - self.time_ps[s] + self.spacing_ps[c]
        idx, lengths = self.subset(keep)
        return idx, lengths, float(time)

    def halves(self) -> tuple[str, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """The independent halves: even vs odd chains, or first vs second half of a single chain."""
        if len(self.lengths) >= 2:
            a = [(c, 0, int(n)) for c, n in enumerate(self.lengths) if c % 2 == 0]
            b = [(c, 0, int(n)) for c, n in enumerate(self.lengths) if c % 2 == 1]
            return "chains at even vs odd positions of the sorted replica ids", a, b
        return "first vs second half of the single chain", *self.early_late()

    def early_late(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        early = [(c, 0, int(n) // 2) for c, n in enumerate(self.lengths)]
        late = [(c, int(n) // 2, int(n)) for c, n in enumerate(self.lengths)]
        return early, late


# --------------------------------------------------------------------------- estimators


def _auto_block(tau: float, lengths: np.ndarray) -> int:
    longest = int(lengths.max())
    if not np.isfinite(tau):
        return 1
    b = max(math.ceil(BLOCK_TAUS * max(tau, 1.0)), math.ceil(int(lengths.sum()) / MAX_BLOCKS), 1)
    return int(min(b, longest))


def _blocks(lengths: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Start offsets and lengths of the contiguous blocks of every chain (see :func:`state_populations`)."""
    starts, sizes, offset = [], [], 0
    for n in lengths:
        n = int(n)
        m = max(1, n // max(int(block), 1))
        size = np.full(m, n // m)
        size[: n % m] += 1
        starts.append(offset + np.concatenate([[0], np.cumsum(size)[:-1]]))
        sizes.append(size)
        offset += n
    return np.concatenate(starts).astype(np.int64), np.concatenate(sizes).astype(np.int64)


def _rng(seed: int, *key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed)] + [zlib.crc32(k.encode()) for k in key])


def _estimate(values: np.ndarray, lengths: np.ndarray, block_frames: int | None, n_boot: int,
              rng: np.random.Generator, confidence: float) -> dict[str, Any]:
    """Population, tau, block length, percentile interval and standard error of ``values``.

    ``values`` are in chain order, ``lengths`` the frames of each chain; the block length is
    ``block_frames`` when given, else chosen from these values' own autocorrelation time.
    """
    values = np.asarray(values, dtype=np.float64)
    n = int(len(values))
    out: dict[str, Any] = {"population": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                           "se": float("nan"), "n_frames": n, "n_frames_in_state": int(np.sum(values)),
                           "n_blocks": 0, "tau_frames": float("nan"), "block_frames": 0}
    if n == 0:
        return out
    tau = integrated_autocorrelation_time(values, lengths)
    block = int(block_frames) if block_frames is not None else _auto_block(tau, lengths)
    block = min(block, int(lengths.max()))
    p = float(np.mean(values))
    starts, sizes = _blocks(lengths, block)
    m = len(sizes)
    out.update(population=p, tau_frames=tau, block_frames=block, n_blocks=int(m))
    if p in (0.0, 1.0):  # constant: every replicate equals the estimate
        out.update(ci_low=p, ci_high=p, se=0.0)
        return out
    if m < 2:
        return out
    sums = np.add.reduceat(values, starts)
    reps = np.empty(n_boot)
    chunk = max(1, _DRAWS_PER_CHUNK // m)
    for lo in range(0, n_boot, chunk):
        hi = min(n_boot, lo + chunk)
        idx = rng.integers(0, m, size=(hi - lo, m))
        reps[lo:hi] = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps, [alpha, 1.0 - alpha])
    out.update(ci_low=float(low), ci_high=float(high), se=float(np.std(reps, ddof=1)))
    return out


def _check_settings(n_boot: int, block_frames: int | None, confidence: float) -> None:
    if int(n_boot) < 2:
        raise ValueError(f"n_boot must be at least 2, got {n_boot}")
    if block_frames is not None and int(block_frames) < 1:
        raise ValueError(f"block_frames must be a positive number of frames or None, got {block_frames}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def bootstrap_population(indicator: Any, replica: Any, time_ps: Any, *, n_boot: int = 1000,
                         seed: int = 0, block_frames: int | None = None,
                         confidence: float = 0.95) -> dict[str, Any]:
    """Mean of a 0/1 per-frame ``indicator`` with its pooled block-bootstrap interval.

    Returns ``population``, ``ci_low``, ``ci_high``, ``se``, ``n_frames``, ``n_frames_in_state``,
    ``n_blocks``, ``tau_frames`` and ``block_frames`` (definitions in :func:`state_populations`).
    ``block_frames=1`` gives the naive iid bootstrap.
    """
    _check_settings(n_boot, block_frames, confidence)
    chains = _Chains(replica, time_ps)
    values = chains.sort(np.asarray(indicator, dtype=np.float64))
    return _estimate(values, chains.lengths, block_frames, n_boot, _rng(seed, "population"), confidence)


# --------------------------------------------------------------------------- tables


def _prepare(states: pd.DataFrame, replica: Any, time_ps: Any):
    if len(states) != len(np.asarray(replica)):
        raise ValueError(f"states has {len(states)} rows but replica/time_ps have {len(np.asarray(replica))}")
    chains = _Chains(replica, time_ps)
    return chains, [(res, state, chains.sort(values)) for res, state, values in _indicators(states)]


def state_populations(states: pd.DataFrame, replica: Any, time_ps: Any, *, n_boot: int = 1000,
                      seed: int = 0, block_frames: int | None = None,
                      confidence: float = 0.95) -> pd.DataFrame:
    """Population of every basin (and ``phi>0``) of every residue, with block-bootstrap intervals.

    ``states`` is the output of :func:`conformational_states`, row-aligned with ``replica`` and
    ``time_ps``. One row per (residue, state) with ``population``, ``ci_low``, ``ci_high``,
    ``se``, ``n_frames``, ``n_frames_in_state``, ``n_blocks``, ``tau_frames``, ``block_frames``.

    For a state S of a residue, let ``I_t`` be 1 when frame t is in S and 0 otherwise.

    - **population**: the fraction of all frames in S, ``sum_t I_t / N`` (every frame of every chain
      weighs the same, so long chains weigh more than short ones).
    - **n_frames_in_state**: ``sum_t I_t``. A state that is never visited has population 0 and
      interval [0, 0]; the count 0 next to it shows the reader why.
    - **tau_frames** (integrated autocorrelation time of ``I``, in frames): the autocovariance of
      ``I`` at lag k is summed over all chains around the *pooled* mean and divided by the total
      frame count; ``tau = 1 + 2 sum_k rho_k`` is summed with Geyer's initial positive sequence
      (stop at the first pair of lags whose correlation sum is not positive). Centring on the
      pooled mean makes chains that sit in different basins look long-correlated, which is what
      should happen: their blocks then become whole chains. NaN when ``I`` is constant.
    - **block_frames** (target block length ``b``): ``ceil(5 * max(tau, 1))``, raised when needed so
      that there are at most 2,000 blocks in all (cost control; longer blocks only make the
      interval more conservative), and capped at the longest chain. Pass ``block_frames`` to
      override (it is then used as given, capped at each chain's length). Each chain of ``n``
      frames is cut into ``m = max(1, n // b)`` contiguous blocks of nearly equal length (``n // m``
      or one more), so no block is shorter than ``min(b, n)`` and there are no stub blocks.
    - **confidence interval** (block bootstrap, *pooled*): the ``M`` blocks of all chains form one
      pool; a bootstrap replicate draws ``M`` blocks from the pool uniformly with replacement and
      computes ``sum of I over the drawn blocks / frames in the drawn blocks``. The interval is the
      (2.5 %, 97.5 %) percentiles of ``n_boot`` replicates (for ``confidence=0.95``), ``se`` their
      standard deviation. Pooling across chains (rather than resampling within each chain) lets the
      spread *between* chains enter the interval, so chains stuck in different basins give a wide
      interval instead of a falsely narrow one. The blocks keep the autocorrelation within ``b``
      frames, so the interval is right when ``b`` is several times ``tau``; an iid bootstrap
      (``block_frames=1``) is too narrow by about ``sqrt(tau)``. With fewer than about 10 blocks
      (see ``n_blocks``) the interval is rough; with a single block and a non-constant ``I`` there
      is no information about the spread and the interval and ``se`` are NaN.
    - The random numbers of every estimate come from ``numpy.random.default_rng`` seeded with
      ``seed`` and a fixed key naming the residue, state and data subset, so a number does not
      depend on which other numbers were computed.
    """
    _check_settings(n_boot, block_frames, confidence)
    chains, rows = _prepare(states, replica, time_ps)
    return pd.DataFrame([_population_row(chains, r, block_frames, n_boot, seed, confidence) for r in rows])


def _population_row(chains: _Chains, row, block_frames, n_boot: int, seed: int,
                    confidence: float) -> dict[str, Any]:
    res, state, values = row
    est = _estimate(values, chains.lengths, block_frames, n_boot, _rng(seed, res, state, "all"), confidence)
    return {"residue": res, "state": state, **est}


def _compare(chains: _Chains, row, parts, names: tuple[str, str], block_frames, n_boot: int, seed: int,
             confidence: float, z_max: float, floor: float, test: str) -> tuple[dict[str, Any], bool]:
    """Estimate two disjoint parts of the data independently and test whether they agree."""
    res, state, values = row
    out: dict[str, Any] = {}
    for name, keep in zip(names, parts):
        idx, lengths = chains.subset(keep)
        est = _estimate(values[idx], lengths, block_frames, n_boot, _rng(seed, res, state, name), confidence)
        out.update({name: est["population"], f"{name}_ci_low": est["ci_low"],
                    f"{name}_ci_high": est["ci_high"], f"{name}_se": est["se"],
                    f"{name}_n_frames": est["n_frames"], f"{name}_block_frames": est["block_frames"]})
    p1, p2 = out[names[0]], out[names[1]]
    s1, s2 = out[f"{names[0]}_se"], out[f"{names[1]}_se"]
    if p1 == p2:
        z = 0.0
    else:
        var = s1**2 + s2**2
        z = abs(p1 - p2) / math.sqrt(var) if var > 0 else (float("inf") if np.isfinite(var) else float("nan"))
    agree = bool(p1 == p2 or (p1 < floor and p2 < floor) or (np.isfinite(z) and z <= z_max))
    out[f"z_{test}"] = z
    return out, agree


def halves_agreement(states: pd.DataFrame, replica: Any, time_ps: Any, *, n_boot: int = 1000,
                     seed: int = 0, block_frames: int | None = None, confidence: float = 0.95,
                     z_max: float = 3.0, floor: float = 1e-3) -> pd.DataFrame:
    """Populations of two independent halves of the data and whether they agree.

    Split and test as below. One row per (residue, state) with ``split``,
    ``half_a``, ``half_a_ci_low``, ``half_a_ci_high``, ``half_a_se``, ``half_a_n_frames``,
    ``half_a_block_frames``, the same for ``half_b``, ``z_halves`` and ``halves_agree``.

    The data are split into two parts that are estimated independently:

    - two or more chains: chains at even positions of the sorted replica ids (half A) against
      chains at odd positions (half B). The halves share no frames and no chain, so they are truly
      independent samples;
    - a single chain: the first ``n // 2`` frames (A) against the rest (B).

    Each half is treated as a data set of its own: its population, ``tau``, block length and
    interval are computed from its frames only (so a half does not inherit a long block length
    that only the disagreement between the halves created). The test statistic is
    ``z_halves = |p_A - p_B| / sqrt(se_A^2 + se_B^2)``; the halves agree (``halves_agree``) when
    ``z_halves <= 3`` (about a 0.3 % false-alarm rate per row for well-sampled data), or when both populations are below ``floor`` (default 1e-3: too rare to
    compare), or when ``p_A == p_B`` exactly. A half whose interval cannot be estimated (NaN
    ``se``) cannot be shown to agree. The split by chains detects chains (or groups of chains)
    that disagree beyond their stated uncertainty; it cannot see a bias that every chain shares,
    such as all chains started from the same structure and not yet relaxed. For that, the report
    also compares the first half of *every* chain's time with the second half (``early``,
    ``late``, ``z_drift``, ``no_drift``, same test); these halves are adjacent in time, so the test
    is conservative when ``tau`` is comparable to the chain length.
    """
    _check_settings(n_boot, block_frames, confidence)
    chains, rows = _prepare(states, replica, time_ps)
    split, a, b = chains.halves()
    out = []
    for row in rows:
        cmp, agree = _compare(chains, row, (a, b), ("half_a", "half_b"), block_frames, n_boot, seed,
                              confidence, z_max, floor, "halves")
        out.append({"residue": row[0], "state": row[1], "split": split, **cmp, "halves_agree": agree})
    return pd.DataFrame(out)


def populations_vs_time(states: pd.DataFrame, replica: Any, time_ps: Any, *, n_checkpoints: int = 10,
                        n_boot: int = 1000, seed: int = 0, block_frames: int | None = None,
                        confidence: float = 0.95) -> pd.DataFrame:
    """Population and interval of every row using each chain's first ``k / n_checkpoints`` of time.

    One row per (residue, state, checkpoint) with ``fraction``, ``time_ns`` (aggregate simulated
    time of the frames used, all chains), and the columns of :func:`state_populations`, all
    computed from the frames up to the checkpoint only.

    At checkpoints ``k / K`` (``k = 1..K``, ``K = n_checkpoints``) every chain keeps its first
    ``ceil(n * k / K)`` frames (its first fraction ``k / K`` of time, for evenly saved frames) and
    the population, ``tau``, block length and interval are recomputed from those frames alone:
    each point is what the data up to that time would have said. The abscissa is the *aggregate*
    simulated time of the kept frames of all chains, in ns; a chain's time is
    ``t_last - t_first + dt`` with ``dt`` its median frame spacing.
    """
    _check_settings(n_boot, block_frames, confidence)
    if int(n_checkpoints) < 1:
        raise ValueError(f"n_checkpoints must be at least 1, got {n_checkpoints}")
    chains, rows = _prepare(states, replica, time_ps)
    out = []
    for k in range(1, int(n_checkpoints) + 1):
        fraction = k / int(n_checkpoints)
        idx, lengths, time_ps_total = chains.prefix(fraction)
        for res, state, values in rows:
            est = _estimate(values[idx], lengths, block_frames, n_boot, _rng(seed, res, state, f"time{k}"),
                            confidence)
            out.append({"residue": res, "state": state, "checkpoint": k, "fraction": fraction,
                        "time_ns": time_ps_total / 1000.0, **est})
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- report


def align_inputs(frames_columns: pd.DataFrame, dihedrals: pd.DataFrame
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Check a frames table against its dihedral table; return (dihedrals in frame order, replica, time_ps).

    Raises ValueError naming the problem: missing ``replica`` / ``time_ps`` / ``frame`` columns, a
    dihedral table whose ``frame`` values are not exactly ``0 .. N-1`` for the ``N`` frames, or
    no residue with both phi and psi.
    """
    missing = [c for c in ("replica", "time_ps") if c not in frames_columns.columns]
    if missing:
        raise ValueError(
            f"frames table is missing column(s) {missing} needed to tell chains and time apart "
            f"(has {list(frames_columns.columns)})"
        )
    if "frame" not in dihedrals.columns:
        raise ValueError(f"dihedral table has no 'frame' column (has {list(dihedrals.columns)})")
    n = len(frames_columns)
    frame = np.asarray(dihedrals["frame"])
    if len(frame) != n:
        raise ValueError(
            f"dihedral table has {len(frame)} rows but the frames table has {n} frames: the "
            "dihedrals were not computed from these frames"
        )
    order = np.argsort(frame, kind="stable")
    if not np.array_equal(frame[order], np.arange(n)):
        bad = sorted(set(np.unique(frame).tolist()) ^ set(range(n)))[:5]
        raise ValueError(
            f"dihedral table's 'frame' column must hold each of 0..{n - 1} once (the row index of "
            f"the frames table); it does not (e.g. {bad} missing, extra or repeated)"
        )
    _pairs(dihedrals)
    aligned = dihedrals.iloc[order].reset_index(drop=True)
    return aligned, frames_columns["replica"].to_numpy(), frames_columns["time_ps"].to_numpy(np.float64)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _fmt(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    if p == 0.0:
        return "0"
    if abs(p) < 0.01:
        return f"{p:.2e}"
    return f"{p:.4f}"


def _fmt_ci(lo: float, hi: float) -> str:
    return f"[{_fmt(lo)}, {_fmt(hi)}]"


def _markdown(table: pd.DataFrame, summary: dict[str, Any], name: str | None) -> str:
    c = summary
    title = f"Convergence of {name} MD data" if name else "Convergence of MD data"
    lo, hi = c["frames_per_chain_min"], c["frames_per_chain_max"]
    per_chain = f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    lines = [
        f"# {title}",
        "",
        f"**{c['n_frames']:,} frames in {c['n_chains']} chain(s)** ({per_chain} frames each), "
        f"**{c['aggregate_time_ns']:.3g} ns** aggregate "
        f"simulated time; independent halves ({c['halves_split']}) agree for all rows: "
        f"**{'yes' if c['all_halves_agree'] else 'NO'}**; no drift between the first and second half "
        f"of every chain: **{'yes' if c['no_drift'] else 'NO'}**.",
        "",
        f"Populations are fractions of frames; intervals are {c['confidence']:.0%} pooled block-bootstrap "
        f"percentile intervals ({c['n_boot']} replicates, seed {c['seed']}); z is |p_A - p_B| / "
        f"sqrt(se_A^2 + se_B^2), agreement when z <= {c['z_max']:g} or both halves below "
        f"{c['floor']:g}. tau is the integrated autocorrelation time of the state indicator in "
        "frames; blocks with fewer than 10 entries give rough intervals.",
        "",
        "| residue | state | population | CI | frames in state | half A (CI) | half B (CI) | z | agree "
        "| drift z | tau | block | blocks |",
        "|---|---|---:|---|---:|---|---|---:|:---:|---:|---:|---:|---:|",
    ]
    for r in table.itertuples(index=False):
        tau = "–" if not np.isfinite(r.tau_frames) else f"{r.tau_frames:.3g}"
        lines.append(
            f"| {r.residue} | {r.state} | {_fmt(r.population)} | {_fmt_ci(r.ci_low, r.ci_high)} "
            f"| {r.n_frames_in_state:,} | {_fmt(r.half_a)} {_fmt_ci(r.half_a_ci_low, r.half_a_ci_high)} "
            f"| {_fmt(r.half_b)} {_fmt_ci(r.half_b_ci_low, r.half_b_ci_high)} | {r.z_halves:.2f} "
            f"| {'yes' if r.halves_agree else '**no**'} | {r.z_drift:.2f}{'' if r.no_drift else ' **!**'} "
            f"| {tau} | {r.block_frames:,} | {r.n_blocks:,} |"
        )
    return "\n".join(lines) + "\n"


def convergence_report(frames_columns: pd.DataFrame, dihedrals: pd.DataFrame, *, n_boot: int = 1000,
                       seed: int = 0, block_frames: int | None = None, confidence: float = 0.95,
                       z_max: float = 3.0, floor: float = 1e-3, name: str | None = None
                       ) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """Basin populations with intervals, the halves test and the drift test, as table, Markdown, summary.

    ``frames_columns`` is ``read_sample_set(frames.parquet).columns``; ``dihedrals`` the table of
    rule ``dihedrals`` for the same frames. The table has one row per (residue, state), the
    ``phi>0`` union included, with ``population``, ``ci_low``, ``ci_high``, ``se``,
    ``n_frames``, ``n_frames_in_state``, ``tau_frames``, ``block_frames``, ``n_blocks``, the
    columns of :func:`halves_agreement` (``half_a``, ``half_b``, their intervals, ``z_halves``,
    ``halves_agree``) and of the drift test (``early``, ``late``, their intervals, ``z_drift``,
    ``no_drift``). ``name`` (e.g. the system) goes into the Markdown title. The summary is a
    JSON-serialisable dict (non-finite numbers become None).

    - the ``columns`` of a frames sample set (:func:`boltzflow.io.read_sample_set`), of which two
      columns are used: ``replica`` (which independent chain a frame belongs to) and ``time_ps``
      (simulated time of the frame within its chain). Chains may have different lengths and the
      rows may be in any order: frames are put in (replica, time) order here.
    - the dihedral table of the same frames (rule ``dihedrals``): a ``frame`` column (row index
      into the frames table) and ``phi_<RES>`` / ``psi_<RES>`` columns in radians.
    """
    _check_settings(n_boot, block_frames, confidence)
    aligned, replica, time_ps = align_inputs(frames_columns, dihedrals)
    states = conformational_states(aligned)
    chains, rows = _prepare(states, replica, time_ps)
    split, a, b = chains.halves()
    records = []
    for row in rows:
        pop = _population_row(chains, row, block_frames, n_boot, seed, confidence)
        halves, agree = _compare(chains, row, (a, b), ("half_a", "half_b"), block_frames, n_boot, seed,
                                 confidence, z_max, floor, "halves")
        drift, steady = _compare(chains, row, chains.early_late(), ("early", "late"), block_frames, n_boot,
                                 seed, confidence, z_max, floor, "drift")
        records.append({**pop, **halves, "halves_agree": agree, **drift, "no_drift": steady})
    table = pd.DataFrame(records)
    first = ["residue", "state", "population", "ci_low", "ci_high", "se", "n_frames", "n_frames_in_state",
             "half_a", "half_b", "z_halves", "halves_agree", "block_frames", "tau_frames", "n_blocks"]
    table = table[first + [c for c in table.columns if c not in first]]
    _, _, total_ps = chains.prefix(1.0)
    disagree = [f"{r.residue} {r.state}" for r in table.itertuples() if not r.halves_agree]
    drifting = [f"{r.residue} {r.state}" for r in table.itertuples() if not r.no_drift]
    summary = {
        "n_frames": chains.n_frames,
        "n_chains": int(len(chains.lengths)),
        "frames_per_chain_min": int(chains.lengths.min()),
        "frames_per_chain_max": int(chains.lengths.max()),
        "aggregate_time_ns": total_ps / 1000.0,
        "halves_split": split,
        "all_halves_agree": not disagree,
        "halves_disagree": disagree,
        "no_drift": not drifting,
        "drift": drifting,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "block_frames": None if block_frames is None else int(block_frames),
        "confidence": float(confidence),
        "z_max": float(z_max),
        "floor": float(floor),
        "populations": {
            res: {r.state: [r.population, r.ci_low, r.ci_high] for r in group.itertuples()}
            for res, group in table.groupby("residue", sort=False)
        },
    }
    summary = _json_safe(summary)
    return table, _markdown(table, summary, name), summary


def convergence_curves(frames_columns: pd.DataFrame, dihedrals: pd.DataFrame, *, n_checkpoints: int = 10,
                       n_boot: int = 1000, seed: int = 0, block_frames: int | None = None,
                       confidence: float = 0.95) -> pd.DataFrame:
    """:func:`populations_vs_time` for a frames table and its dihedral table (checked as in the report)."""
    aligned, replica, time_ps = align_inputs(frames_columns, dihedrals)
    return populations_vs_time(conformational_states(aligned), replica, time_ps,
                               n_checkpoints=n_checkpoints, n_boot=n_boot, seed=seed,
                               block_frames=block_frames, confidence=confidence)
