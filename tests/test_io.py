import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from boltzflow.io import (
    ArtifactError,
    atomic_path,
    config_hash,
    provenance,
    read_metadata,
    read_sample_set,
    read_table,
    write_sample_set,
    write_table,
)


def test_sample_set_round_trip_and_schema(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 66))
    energy = rng.normal(size=50) * 10
    log_q = rng.normal(size=50)
    path = tmp_path / "s.parquet"
    write_sample_set(path, x, energy, target="al2", units="nm", log_q=log_q,
                     extra={"replica": np.arange(50) % 3}, metadata=provenance("test", {"a": 1}, seed=3))
    schema = pq.read_schema(path)
    assert str(schema.field("x").type) == "fixed_size_list<element: float>[66]"
    for col in ("energy", "log_q", "log_w"):
        assert str(schema.field(col).type) == "double"
    s = read_sample_set(path, expected_dim=66, expected_target="al2")
    np.testing.assert_array_equal(s.x, x.astype(np.float32))
    np.testing.assert_array_equal(s.energy, energy)
    # log_w = -energy - log_q, computed in float64 by the writer
    np.testing.assert_allclose(s.columns["log_w"].to_numpy(), -energy - log_q, rtol=0, atol=0)
    meta = s.metadata
    assert meta["target"] == "al2" and meta["dim"] == 66 and meta["units"] == "nm"
    assert meta["seed"] == 3 and meta["config_hash"] == config_hash({"a": 1})
    assert set(meta["versions"]) >= {"torch", "openmm", "boltzflow"}
    assert meta["git_commit"]


def test_md_sample_set_has_null_weights(tmp_path):
    path = tmp_path / "md.parquet"
    write_sample_set(path, np.zeros((4, 6)), np.zeros(4), target="t", units="nm")
    s = read_sample_set(path)
    assert s.columns["log_q"].isna().all() and s.columns["log_w"].isna().all()


def test_read_errors_name_the_file(tmp_path):
    path = tmp_path / "s.parquet"
    write_sample_set(path, np.zeros((3, 6)), np.zeros(3), target="al2", units="nm")
    with pytest.raises(ArtifactError, match=r"s\.parquet.*dimension 6, expected 66"):
        read_sample_set(path, expected_dim=66)
    with pytest.raises(ArtifactError, match=r"s\.parquet.*target 'al2', expected 'al4'"):
        read_sample_set(path, expected_target="al4")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(ArtifactError, match=r"bad\.parquet: not a readable Parquet"):
        read_sample_set(bad)
    with pytest.raises(ArtifactError, match=r"missing\.parquet: file does not exist"):
        read_sample_set(tmp_path / "missing.parquet")
    import pandas as pd
    write_table(tmp_path / "t.parquet", pd.DataFrame({"a": [1.0]}))
    with pytest.raises(ArtifactError, match=r"t\.parquet: not a sample set, missing column"):
        read_sample_set(tmp_path / "t.parquet")
    with pytest.raises(ArtifactError, match=r"t\.parquet: missing column\(s\) \['frame'\]"):
        read_table(tmp_path / "t.parquet", required=("frame",))


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("complete")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "complete"
    assert list(tmp_path.iterdir()) == [path]  # no temporary left behind


def test_table_metadata(tmp_path):
    import pandas as pd
    write_table(tmp_path / "t.parquet", pd.DataFrame({"frame": [0, 1]}), {"units": "radian"})
    frame, meta = read_table(tmp_path / "t.parquet", required=("frame",))
    assert meta["units"] == "radian" and list(frame.frame) == [0, 1]
    assert json.dumps(read_metadata(tmp_path / "t.parquet"))


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat

    from boltzflow.io import atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("x")
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "out.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o644
