"""bench_reflow: each reflow solver's pair error against a tight reference solve, on a velocity
field whose flow map is known exactly (a rotation with a shrink)."""

import numpy as np
import pytest
import torch
from boltzflow.bench import bench_reflow, solver_label
from scipy.linalg import expm

GENERATOR = np.array([[-0.3, -2.0], [2.0, -0.3]])  # dx/dt = A x: the flow map is expm(A)


class LinearVelocity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor(GENERATOR, dtype=torch.float64), requires_grad=False)
        self.dim = 2

    def forward(self, t, x):
        return x @ self.A.T


def test_errors_rank_the_solvers_and_the_reference_is_exact():
    model = LinearVelocity()
    solvers = [{"method": "euler", "steps": 10}, {"method": "rk4", "steps": 10}, {"method": "dopri5", "tol": 1e-4}]
    table = bench_reflow(model, n_pairs=300, solvers=solvers, reference_tol=1e-10, batch_size=128, seed=3)
    assert list(table.solver) == ["euler x 10", "rk4 x 10", "dopri5 tol 0.0001", "dopri5 tol 1e-10"]
    error = table.set_index("solver").rms_error_per_dim
    # euler's local error is O(h^2), rk4's O(h^5): orders of magnitude apart at 10 steps
    assert error["euler x 10"] > 100 * error["rk4 x 10"] > 0
    assert error["dopri5 tol 1e-10"] == 0.0 and (table.pairs_per_s > 0).all()
    assert table.nfe_per_batch.iloc[1] == 40  # 4 evaluations per rk4 step
    # the reference solve against the exact flow map
    x0 = torch.randn(300, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    from boltzflow.cnf import integrate

    exact = x0.numpy() @ expm(GENERATOR).T
    reference = integrate(model, x0, method="dopri5", atol=1e-10, rtol=1e-10).numpy()
    assert np.abs(reference - exact).max() < 1e-8
    # euler's reported error is its distance from the exact map, to the reference's accuracy
    euler = integrate(model, x0, method="euler", steps=10).numpy()
    measured = np.sqrt(np.mean(np.sum((euler - exact) ** 2, axis=1)) / 2)
    assert error["euler x 10"] == pytest.approx(measured, rel=1e-6)


def test_bad_solvers_are_refused():
    model = LinearVelocity()
    with pytest.raises(ValueError, match="unknown solver method 'leapfrog'"):
        bench_reflow(model, n_pairs=4, solvers=[{"method": "leapfrog", "steps": 4}])
    with pytest.raises(ValueError, match=r"a fixed-step solver \(rk4\) needs steps >= 1"):
        bench_reflow(model, n_pairs=4, solvers=[{"method": "rk4"}])
    with pytest.raises(ValueError, match="at least one solver"):
        bench_reflow(model, n_pairs=4, solvers=[])
    assert solver_label({"method": "dopri5", "tol": 1e-6}) == "dopri5 tol 1e-06"


def test_reflow_pairs_use_the_fixed_step_solver_they_are_given():
    from boltzflow.cnf import integrate
    from boltzflow.couplings import cnf_pairs

    model = LinearVelocity()
    x0, x1, _ = cnf_pairs(model, 40, batch_size=16, seed=2, method="rk4", steps=7)
    expected = integrate(model, torch.as_tensor(x0, dtype=torch.float64), method="rk4", steps=7).numpy()
    np.testing.assert_allclose(x1, expected, rtol=1e-6, atol=1e-6)
    coarse = cnf_pairs(model, 40, batch_size=16, seed=2, method="rk4", steps=2)[1]
    assert np.abs(coarse - x1).max() > 1e-3  # the step count reaches the solver
