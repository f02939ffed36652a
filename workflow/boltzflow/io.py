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
    "merge_pairs",
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


#: rows per Parquet row group of a pair file (about 30 MB at d = 60): readers and mergers hold
#: one row group at a time, so files of millions of pairs never need two copies in memory
PAIRS_ROW_GROUP = 65536


def _pairs_schema(dim: int, meta: Mapping[str, Any]) -> pa.Schema:
    field_type = pa.list_(pa.float32(), dim)
    return pa.schema([("x0", field_type), ("x1", field_type)], metadata=_metadata_bytes(meta))


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
        pq.write_table(table, tmp, row_group_size=PAIRS_ROW_GROUP)


def _pairs_file(path: Path, expected_dim: int | None) -> tuple[pq.ParquetFile, dict[str, Any], int]:
    """Open a pair file and check its metadata and columns; returns the file, metadata and dim."""
    meta = read_metadata(path)
    if meta.get("format") != PAIRS_FORMAT:
        raise ArtifactError(f"{path}: not a pairs file (format {meta.get('format')!r}, expected {PAIRS_FORMAT!r})")
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise ArtifactError(f"{path}: not a readable Parquet file ({err})") from err
    schema = handle.schema_arrow
    dims = []
    for name in ("x0", "x1"):
        if name not in schema.names or not pa.types.is_fixed_size_list(schema.field(name).type):
            raise ArtifactError(f"{path}: column {name!r} must be a fixed-size list of floats")
        dims.append(schema.field(name).type.list_size)
    if dims[0] != dims[1]:
        raise ArtifactError(f"{path}: x0 and x1 differ in dimension, {dims[0]} and {dims[1]}")
    if expected_dim is not None and dims[0] != expected_dim:
        raise ArtifactError(f"{path}: pairs have dimension {dims[0]}, expected {expected_dim}")
    if meta.get("n_pairs") not in (None, handle.metadata.num_rows):
        raise ArtifactError(f"{path}: holds {handle.metadata.num_rows} pairs, but its metadata records {meta['n_pairs']}")
    return handle, meta, dims[0]


def _pair_batches(path: Path, handle: pq.ParquetFile, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The file's pairs one row group at a time, as float32 arrays, checked to be finite."""
    try:
        for group in range(handle.num_row_groups):
            batch = handle.read_row_group(group, columns=["x0", "x1"])
            arrays = [batch.column(name).combine_chunks().flatten().to_numpy(zero_copy_only=False)
                      .astype(np.float32, copy=False).reshape(len(batch), dim) for name in ("x0", "x1")]
            if not (np.isfinite(arrays[0]).all() and np.isfinite(arrays[1]).all()):
                raise ArtifactError(f"{path}: pairs contain non-finite values (row group {group})")
            yield arrays[0], arrays[1]
    except (pa.ArrowException, OSError) as err:
        raise ArtifactError(f"{path}: not a readable Parquet file ({err})") from err


def read_pairs(path: str | os.PathLike, expected_dim: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read pairs written by :func:`write_pairs` or :func:`merge_pairs`; problems raise
    :class:`ArtifactError` naming the file. Row groups are copied one at a time into the two
    output arrays, so a file of ``N`` pairs needs about ``2 N d`` floats of memory, not twice that."""
    path = Path(path)
    handle, meta, dim = _pairs_file(path, expected_dim)
    n = handle.metadata.num_rows
    x0 = np.empty((n, dim), dtype=np.float32)
    x1 = np.empty((n, dim), dtype=np.float32)
    at = 0
    for part0, part1 in _pair_batches(path, handle, dim):
        x0[at:at + len(part0)], x1[at:at + len(part1)] = part0, part1
        at += len(part0)
    return x0, x1, meta


def merge_pairs(paths: list[str | os.PathLike], path: str | os.PathLike, metadata: Mapping[str, Any],
                expected_dim: int | None = None) -> int:
    """Concatenate pair files (e.g. the shards of a reflow job) into one, streamed row group by
    row group, atomically; returns the number of pairs.

    Every part must be a pair file of the same dimension and the same latent ``frame`` (the
    message names the part that differs). ``metadata`` (which must name the ``frame``) becomes the
    merged file's; ``format``, ``dim`` and ``n_pairs`` are filled in.
    """
    if not paths:
        raise ValueError("merge_pairs needs at least one pair file")
    if "frame" not in metadata:
        raise ValueError("pair metadata must record the latent 'frame'")
    parts = [Path(p) for p in paths]
    opened = [_pairs_file(p, expected_dim) for p in parts]
    dim = opened[0][2]
    for part, (handle, meta, part_dim) in zip(parts, opened):
        if part_dim != dim:
            raise ArtifactError(f"{part}: pairs have dimension {part_dim}, but {parts[0]} has {dim}")
        if meta.get("frame") != metadata["frame"]:
            raise ArtifactError(f"{part}: pairs are in another latent frame than the merge expects "
                                f"({meta.get('frame')} against {metadata['frame']})")
    total = sum(handle.metadata.num_rows for handle, _, _ in opened)
    meta = {**metadata, "format": PAIRS_FORMAT, "dim": int(dim), "n_pairs": int(total)}
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, _pairs_schema(dim, meta)) as writer:
            for part, (handle, _, _) in zip(parts, opened):
                for x0, x1 in _pair_batches(part, handle, dim):
                    writer.write_table(pa.table({"x0": _fixed_size_list(x0), "x1": _fixed_size_list(x1)},
                                                schema=_pairs_schema(dim, meta)), row_group_size=PAIRS_ROW_GROUP)
    return total
