import numpy as np
import pytest
from boltzflow.md import block_split


def test_block_split_is_contiguous_per_replica_and_deterministic():
    replica = np.repeat([0, 1], 100)
    time_ps = np.tile(np.arange(100.0), 2)
    perm = np.random.default_rng(1).permutation(200)  # row order must not matter
    table = block_split(replica[perm], time_ps[perm], 0.8, 0.1, 0.1)
    labels = table.split.to_numpy()
    assert (table.frame.to_numpy() == np.arange(200)).all()
    for r in (0, 1):
        rows = np.flatnonzero(replica[perm] == r)
        ordered = labels[rows[np.argsort(time_ps[perm][rows])]]
        assert list(ordered) == ["train"] * 80 + ["val"] * 10 + ["test"] * 10
    again = block_split(replica[perm], time_ps[perm], 0.8, 0.1, 0.1)
    assert (again.split == table.split).all()


def test_block_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        block_split(np.zeros(3), np.arange(3.0), 0.5, 0.5, 0.5)
