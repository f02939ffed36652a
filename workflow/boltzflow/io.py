"""Artifacts on disk: Parquet sample sets and tables with provenance, written atomically."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "ArtifactError",
    "read_pairs",
    "write_pairs",
    "SampleSet",
    "atomic_path",
    "config_hash",
    "file_digest",
    "git_commit",
    "provenance",
    "read_metadata",
    "read_sample_set",
    "read_table",
    "write_sample_set",
    "write_table",
]

METADATA_KEY = b"boltzflow"
SAMPLE_SET_FORMAT = "boltzflow.sample_set/1"
TABLE_FORMAT = "boltzflow.table/1"
PAIRS_FORMAT = "boltzflow.pairs/1"


class ArtifactError(ValueError):
    """A file on disk is missing, malformed, or does not match what the caller expects.

    The message always names the file and says what is wrong with it.
    """


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place only if the block succeeds.

    The temporary file lives in the same folder, so the final ``os.replace`` is atomic on POSIX:
    readers see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the mode a plain open() would, so results
    # on a shared file system stay readable to the group as the umask allows
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def load_resume_state(path: str | os.PathLike, identity: str, log, map_location: Any = "cpu") -> dict[str, Any] | None:
    """The training checkpoint at ``path`` if it exists, is readable (``weights_only=True``) and was
    written by the run called ``identity``; otherwise ``None``, with a warning saying why."""
    import torch

    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        log.warning("checkpoint %s is unreadable (%s); training from scratch", path, err)
        return None
    if not isinstance(state, dict) or state.get("identity") != identity:
        log.warning("checkpoint %s belongs to another run; training from scratch", path)
        return None
    return state


def file_digest(path: str | os.PathLike) -> str:
    """A short SHA-256 digest of a file's bytes (16 hex digits): which artifact, not where it lies."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable hash of a JSON-serialisable config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def git_commit() -> str:
    """The project's git commit (``+dirty`` when the tree has changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        if not commit:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "not installed"


def provenance(
    rule: str,
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Metadata recording which rule, settings, seed and code produced an artifact."""
    meta: dict[str, Any] = {
        "rule": rule,
        "config_hash": config_hash(config) if config is not None else None,
        "seed": seed,
        "git_commit": git_commit(),
        "library_path": str(Path(__file__).resolve().parent),
        "versions": {p: _version(p) for p in ("boltzflow", "torch", "openmm", "mdtraj")},
    }
    meta.update(extra)
    return meta


def _metadata_bytes(meta: Mapping[str, Any]) -> dict[bytes, bytes]:
    return {METADATA_KEY: json.dumps(meta, sort_keys=True, default=str).encode()}


def write_sample_set(
    path: str | os.PathLike,
    x: np.ndarray,
    energy: np.ndarray,
    *,
    target: str,
    units: str,
    log_q: np.ndarray | None = None,
    extra: Mapping[str, np.ndarray] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write a sample set (schema below) atomically to ``path``.

    ``x`` has shape ``(N, dim)`` and is stored as float32; ``energy`` (kT) and ``log_q`` are
    stored as float64. When ``log_q`` is given, ``log_w = -energy - log_q`` is computed here in
    float64, so no caller can get its sign wrong.

    Sample-set schema (one row per configuration), shared by every stage of the workflow:

    - ``x``: fixed-size list of float32, length ``dim`` (flattened ``(n_atoms, 3)`` in nm for peptides);
    - ``energy``: float64, reduced energy in kT;
    - ``log_q``: float64, the sampler's exact log-density (null for MD data);
    - ``log_w``: float64, unnormalised log importance weight ``-energy - log_q`` (null for MD data);
    - any extra columns a stage adds (``replica``, ``time_ps``, ``weight`` ...).

    The schema metadata key ``boltzflow`` holds a JSON object with the target name, ``dim``,
    units, the producing rule, a hash of the config that made the file, the seed, the project's
    git commit and the versions of torch, openmm and boltzflow, so a number can always be traced
    to the code and settings that made it.

    Every writer goes through :func:`atomic_path`, so a killed job never leaves a half-written
    file under the final name.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, dim), got {x.shape}")
    n, dim = x.shape
    energy = np.asarray(energy, dtype=np.float64).reshape(-1)
    if energy.shape != (n,):
        raise ValueError(f"energy must have shape ({n},), got {energy.shape}")
    flat = pa.array(np.ascontiguousarray(x, dtype=np.float32).reshape(-1), type=pa.float32())
    columns: dict[str, pa.Array] = {
        "x": pa.FixedSizeListArray.from_arrays(flat, dim),
        "energy": pa.array(energy, type=pa.float64()),
    }
    if log_q is not None:
        log_q = np.asarray(log_q, dtype=np.float64).reshape(-1)
        if log_q.shape != (n,):
            raise ValueError(f"log_q must have shape ({n},), got {log_q.shape}")
        columns["log_q"] = pa.array(log_q, type=pa.float64())
        columns["log_w"] = pa.array(-energy - log_q, type=pa.float64())
    else:
        columns["log_q"] = pa.nulls(n, type=pa.float64())
        columns["log_w"] = pa.nulls(n, type=pa.float64())
    for name, values in (extra or {}).items():
        values = np.asarray(values)
        if values.shape != (n,):
            raise ValueError(f"column {name!r} must have shape ({n},), got {values.shape}")
        columns[name] = pa.array(values)
    meta = {"format": SAMPLE_SET_FORMAT, "target": target, "dim": dim, "units": units}
    meta.update(metadata or {})
    table = pa.table(columns).replace_schema_metadata(_metadata_bytes(meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@dataclass
class SampleSet:
    """A sample set read back from Parquet: coordinates, energies and the other columns."""

    x: np.ndarray  # (N, dim) float32
    energy: np.ndarray  # (N,) float64, kT
    columns: pd.DataFrame  # every column except x
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    def __len__(self) -> int:
        return self.x.shape[0]


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``boltzflow`` metadata of a Parquet file (empty dict if it has none)."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: file does not exist")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as err:
        raise ArtifactError(f"{path}: not a readable Parquet file ({err})") from err
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def read_sample_set(
    path: str | os.PathLike,
    *,
    expected_dim: int | None = None,
    expected_target: str | None = None,
) -> SampleSet:
    """Read and check a sample set; any problem raises :class:`ArtifactError` naming the file."""
    path = Path(path)
    meta = read_metadata(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ArtifactError(f"{path}: not a readable Parquet file ({err})") from err
    missing = {"x", "energy"} - set(table.column_names)
    if missing:
        raise ArtifactError(
            f"{path}: not a sample set, missing column(s) {sorted(missing)} "
            f"(has {table.column_names})"
        )
    x_type = table.schema.field("x").type
    if not pa.types.is_fixed_size_list(x_type):
        raise ArtifactError(f"{path}: column 'x' must be a fixed-size list of floats, got {x_type}")
    dim = x_type.list_size
    if expected_dim is not None and dim != expected_dim:
        raise ArtifactError(f"{path}: samples have dimension {dim}, expected {expected_dim}")
    if expected_target is not None and meta.get("target") not in (None, expected_target):
        raise ArtifactError(
            f"{path}: sample set is for target {meta.get('target')!r}, expected {expected_target!r}"
        )
    x_col = table.column("x").combine_chunks()
    flat = x_col.flatten().to_numpy(zero_copy_only=False)
    x = flat.astype(np.float32, copy=False).reshape(len(table), dim)
    energy = table.column("energy").to_numpy().astype(np.float64)
    columns = table.drop_columns(["x"]).to_pandas()
    return SampleSet(x=x, energy=energy, columns=columns, metadata=meta)


def write_table(
    path: str | os.PathLike, frame: pd.DataFrame, metadata: Mapping[str, Any] | None = None
) -> None:
    """Write a plain table (observables, splits, metrics) atomically, with metadata."""
    meta = {"format": TABLE_FORMAT}
    meta.update(metadata or {})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    merged = dict(table.schema.metadata or {})
    merged.update(_metadata_bytes(meta))
    table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(
    path: str | os.PathLike, required: tuple[str, ...] = ()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table written by :func:`write_table`, checking that ``required`` columns exist."""
    path = Path(path)
    meta = read_metadata(path)
    frame = pd.read_parquet(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ArtifactError(f"{path}: missing column(s) {missing} (has {list(frame.columns)})")
    return frame, meta


def _fixed_size_list(values: np.ndarray) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def write_pairs(path: str | os.PathLike, x0: np.ndarray, x1: np.ndarray, metadata: Mapping[str, Any]) -> None:
    """Write regression pairs ``(x0, x1)`` (float32 ``(N, d)`` each, flow latent coordinates)
    atomically; ``metadata`` must say which frame the latent coordinates belong to (``frame``)."""
    x0, x1 = np.asarray(x0), np.asarray(x1)
    if x0.ndim != 2 or x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must both have shape (N, d), got {x0.shape} and {x1.shape}")
    if "frame" not in metadata:
        raise ValueError("pair metadata must record the latent 'frame'")
    meta = {"format": PAIRS_FORMAT, "dim": int(x0.shape[1]), "n_pairs": int(len(x0)), **metadata}
    table = pa.table({"x0": _fixed_size_list(x0), "x1": _fixed_size_list(x1)})
    table = table.replace_schema_metadata(_metadata_bytes(meta))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_pairs(path: str | os.PathLike, expected_dim: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read pairs written by :func:`write_pairs`; problems raise :class:`ArtifactError` naming the file."""
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != PAIRS_FORMAT:
        raise ArtifactError(f"{path}: not a pairs file (format {meta.get('format')!r}, expected {PAIRS_FORMAT!r})")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise ArtifactError(f"{path}: not a readable Parquet file ({err})") from err
    arrays = []
    for name in ("x0", "x1"):
        if name not in table.column_names or not pa.types.is_fixed_size_list(table.schema.field(name).type):
            raise ArtifactError(f"{path}: column {name!r} must be a fixed-size list of floats")
        column = table.column(name).combine_chunks()
        dim = column.type.list_size
        arrays.append(column.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(table), dim))
    if arrays[0].shape != arrays[1].shape:
        raise ArtifactError(f"{path}: x0 and x1 differ in shape, {arrays[0].shape} and {arrays[1].shape}")
    if expected_dim is not None and arrays[0].shape[1] != expected_dim:
        raise ArtifactError(f"{path}: pairs have dimension {arrays[0].shape[1]}, expected {expected_dim}")
    if not (np.isfinite(arrays[0]).all() and np.isfinite(arrays[1]).all()):
        raise ArtifactError(f"{path}: pairs contain non-finite values")
    return arrays[0], arrays[1], meta
