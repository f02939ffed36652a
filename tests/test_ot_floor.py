"""bench_ot_floor: the regression floor of batch-OT pairs, against cases whose answer is known."""

import numpy as np
import pytest
from boltzflow.bench import bench_ot_floor


def test_floor_vanishes_in_one_dimension_and_stays_near_independent_pairing_in_sixty():
    """In 1-D exact OT is the monotone matching, which tends to the function F^-1(Phi(x0)) as the
    batch grows: the floor must fall towards 0. In 60-D batch OT is far from a function at these
    batch sizes: the floor stays a large fraction of the data's variance (measured: 0.054 and
    0.0066 of it in 1-D at 64 and 256; 0.91 and 0.84 in 60-D), and ``independent_per_dim`` is
    that variance."""
    rng = np.random.default_rng(0)
    line = 1.0 + 2.0 * rng.standard_normal((4000, 1))
    one = bench_ot_floor(line, [64, 256], queries=16, repeats=4, seed=1)
    assert one.independent_per_dim.iloc[0] == pytest.approx(line.var(ddof=1))
    assert (one.ratio_vs_independent < 0.15).all()
    assert one.floor_per_dim.iloc[1] < one.floor_per_dim.iloc[0]
    wide = rng.standard_normal((4000, 60)) * np.linspace(0.5, 1.5, 60)
    many = bench_ot_floor(wide, [64, 256], queries=16, repeats=4, seed=1)
    assert (many.ratio_vs_independent > 0.5).all()
    assert (many.pair_sq_distance < 2 * many.independent_per_dim).all() and (many.solve_s >= 0).all()
    assert list(many.columns[:4]) == ["batch_size", "repeats", "queries", "floor_per_dim"]


def test_bad_settings_are_refused():
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="exceed the 4 queries"):
        bench_ot_floor(x, [4], queries=4, repeats=2)
    with pytest.raises(ValueError, match="fit the 10 data points"):
        bench_ot_floor(x, [20], queries=4, repeats=2)
    with pytest.raises(ValueError, match="repeats >= 2"):
        bench_ot_floor(x, [8], queries=4, repeats=1)
    with pytest.raises(ValueError, match="finite"):
        bench_ot_floor(np.full((10, 2), np.nan), [8], queries=4, repeats=2)
