"""Pair files at scale: row-group streaming, merging reflow shards, shard sizes and seeds."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from boltzflow import io as bio
from boltzflow.couplings import (
    PairsTeacherError,
    merge_reflow_shards,
    shard_seed,
    shard_sizes,
    teacher_record,
)
from boltzflow.io import ArtifactError, merge_pairs, read_pairs, write_pairs

FRAME = {"kind": "internal", "dim": 3, "hash": "f" * 16}


def _pairs(n: int, seed: int, dim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), rng.standard_normal((n, dim)).astype(np.float32)


def test_pairs_round_trip_exactly_through_many_row_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(bio, "PAIRS_ROW_GROUP", 7)
    x0, x1 = _pairs(50, 0)
    write_pairs(tmp_path / "p.parquet", x0, x1, {"frame": FRAME})
    assert pq.ParquetFile(tmp_path / "p.parquet").num_row_groups == 8  # 7 x 7 + 1
    r0, r1, meta = read_pairs(tmp_path / "p.parquet", expected_dim=3)
    assert np.array_equal(r0, x0) and np.array_equal(r1, x1) and r0.dtype == np.float32
    assert meta["n_pairs"] == 50 and meta["frame"] == FRAME


def test_merge_pairs_concatenates_in_order_and_refuses_mismatched_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(bio, "PAIRS_ROW_GROUP", 16)
    parts = []
    for k, n in enumerate([40, 40, 3]):
        parts.append((tmp_path / f"{k}.parquet", *_pairs(n, k)))
        write_pairs(parts[-1][0], parts[-1][1], parts[-1][2], {"frame": FRAME, "shard": k})
    out = tmp_path / "merged.parquet"
    assert merge_pairs([p for p, _, _ in parts], out, {"frame": FRAME, "kind": "cnf"}) == 83
    x0, x1, meta = read_pairs(out)
    assert np.array_equal(x0, np.concatenate([a for _, a, _ in parts]))
    assert np.array_equal(x1, np.concatenate([b for _, _, b in parts]))
    assert meta["n_pairs"] == 83 and meta["kind"] == "cnf" and "shard" not in meta
    assert pq.ParquetFile(out).num_row_groups >= 6  # streamed, not one table in memory

    other_frame = tmp_path / "other_frame.parquet"
    write_pairs(other_frame, *_pairs(5, 9), {"frame": {**FRAME, "hash": "0" * 16}})
    with pytest.raises(ArtifactError, match="other_frame.parquet: pairs are in another latent frame"):
        merge_pairs([parts[0][0], other_frame], tmp_path / "bad.parquet", {"frame": FRAME})
    other_dim = tmp_path / "other_dim.parquet"
    write_pairs(other_dim, *_pairs(5, 9, dim=4), {"frame": FRAME})
    with pytest.raises(ArtifactError, match="other_dim.parquet: pairs have dimension 4, but .*0.parquet has 3"):
        merge_pairs([parts[0][0], other_dim], tmp_path / "bad.parquet", {"frame": FRAME})
    assert not (tmp_path / "bad.parquet").exists()
    with pytest.raises(ArtifactError, match="other_dim.parquet: pairs have dimension 4, expected 3"):
        read_pairs(other_dim, expected_dim=3)


def test_truncated_or_miscounted_pair_files_are_refused(tmp_path):
    x0, x1 = _pairs(10, 0)
    path = tmp_path / "p.parquet"
    write_pairs(path, x0, x1, {"frame": FRAME, "n_pairs": 10})
    table = pq.read_table(path)
    pq.write_table(table.slice(0, 6), path)  # keeps the metadata, loses rows
    with pytest.raises(ArtifactError, match="p.parquet: holds 6 pairs, but its metadata records 10"):
        read_pairs(path)
    x0[3, 1] = np.nan
    write_pairs(path, x0, x1, {"frame": FRAME})
    with pytest.raises(ArtifactError, match="p.parquet: pairs contain non-finite values"):
        read_pairs(path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ArtifactError, match="junk.parquet: not a readable Parquet file"):
        read_pairs(tmp_path / "junk.parquet")


def test_shard_sizes_cover_the_pairs_and_shard_seeds_differ():
    assert shard_sizes(10, 4) == [4, 4, 2] and shard_sizes(8, 4) == [4, 4] and shard_sizes(3, 250_000) == [3]
    assert sum(shard_sizes(10_400_000, 250_000)) == 10_400_000 and len(shard_sizes(10_400_000, 250_000)) == 42
    with pytest.raises(ValueError, match="n_pairs and shard_pairs must be >= 1"):
        shard_sizes(0, 4)
    seeds = [shard_seed(0, k) for k in range(100)] + [shard_seed(1, k) for k in range(100)]
    assert len(set(seeds)) == 200 and seeds[:100] == [shard_seed(0, k) for k in range(100)]
    with pytest.raises(ValueError, match="seed and shard must be >= 0"):
        shard_seed(0, -1)


def test_reflow_shards_merge_only_from_the_current_teacher_and_only_once(tmp_path):
    teacher = tmp_path / "model.pt"
    teacher.write_bytes(b"teacher weights")
    record = teacher_record(teacher, {"summary": {"steps": 10, "wall_s": 1.0}})
    shards = []
    for k, (n, seconds) in enumerate([(30, 3.0), (10, 1.0)]):
        shards.append(tmp_path / f"{k}.parquet")
        write_pairs(shards[-1], *_pairs(n, k), {"frame": FRAME, "shard": k, "teacher": record,
                                                 "stats": {"seconds": seconds}})
    out = tmp_path / "cnf.parquet"
    stats = merge_reflow_shards(shards, teacher, out, {"frame": FRAME, "kind": "cnf"})
    assert stats == {"seconds": 4.0, "shards": 2, "pairs_per_s": 10.0}
    x0, _, meta = read_pairs(out)
    assert len(x0) == 40 and meta["teacher"] == record and meta["stats"] == stats
    write_pairs(shards[1], *_pairs(10, 1), {"frame": FRAME, "shard": 0, "teacher": record})
    with pytest.raises(ArtifactError, match=r"1.parquet: shard 0 again \(also .*0.parquet\)"):
        merge_reflow_shards(shards, teacher, tmp_path / "twice.parquet", {"frame": FRAME})
    teacher.write_bytes(b"a retrained teacher")
    with pytest.raises(PairsTeacherError, match="0.parquet: made by teacher"):
        merge_reflow_shards(shards, teacher, tmp_path / "stale.parquet", {"frame": FRAME})
    assert not (tmp_path / "twice.parquet").exists() and not (tmp_path / "stale.parquet").exists()
