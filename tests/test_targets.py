"""The Target contract and the peptide targets (torch and OpenMM backends)."""

import numpy as np
import openmm
import pytest
import torch
from boltzflow.md import reduced_energies
from boltzflow.sgds.settings import needs_reference_file, sgds_target_names
from boltzflow.targets import KINDS, exact_sampler_names, load_target, names_of_kind, target_kind, target_names
from boltzflow.targets.openmm_pool import OpenMMPool, openmm_energy


def _frames(target, n, scale=0.01, seed=0):
    rng = np.random.default_rng(seed)
    return (target.positions[None] + rng.normal(scale=scale, size=(n, target.n_atoms, 3))).reshape(n, -1)


def test_unknown_target_lists_the_known_ones():
    with pytest.raises(KeyError, match=r"unknown target 'al9'; known targets: .*al2.*gmm40"):
        load_target("al9")
    assert {"al2", "al3", "al4", "peptide", "gmm40", "manywell32", "lj13", "dw4"} <= set(target_names())


@pytest.fixture(scope="module")
def al2_openmm():
    return load_target("al2", backend="openmm", openmm_workers=2)


def test_peptide_target_exposes_the_system(al2_openmm):
    t = al2_openmm
    assert t.dim == 66 and t.n_atoms == 22 and t.temperature == 300.0 and t.log_z is None
    assert isinstance(t.openmm_system, openmm.System) and t.topology.getNumAtoms() == 22
    assert t.positions.shape == (22, 3)
    with pytest.raises(NotImplementedError):
        t.sample(3)
    with pytest.raises(ValueError, match=r"expected shape \(B, 66\), got \(4, 60\)"):
        t.energy(torch.zeros(4, 60))


def test_openmm_pool_matches_single_context_and_is_differentiable(al2_openmm):
    x = _frames(al2_openmm, 37)
    u_ref = reduced_energies(al2_openmm.openmm_system, 300.0, x.reshape(37, 22, 3))
    u2, f2 = al2_openmm.pool(x)                           # two contexts in threads
    one = OpenMMPool(al2_openmm.openmm_system, 300.0, workers=1)
    u1, f1 = one(x)
    np.testing.assert_allclose(u2, u_ref, rtol=1e-12)
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(f1, f2)
    # autograd through the OpenMM energy gives minus the OpenMM forces
    xt = torch.tensor(x, requires_grad=True)
    u = openmm_energy(xt, al2_openmm.pool)
    (grad,) = torch.autograd.grad(u.sum(), xt)
    np.testing.assert_allclose(grad.numpy(), -f2, rtol=1e-12)
    # and those forces are the derivative of the energy (central differences)
    i, h = 8 * 3 + 1, 1e-6
    xp, xm = x[:1].copy(), x[:1].copy()
    xp[0, i] += h
    xm[0, i] -= h
    fd = (one(xp, forces=False)[0] - one(xm, forces=False)[0]) / (2 * h)
    assert fd[0] == pytest.approx(-f1[0, i], rel=1e-5, abs=1e-4)


def test_non_finite_row_does_not_spoil_the_batch(al2_openmm):
    x = torch.tensor(_frames(al2_openmm, 4))
    x[2, 5] = float("nan")
    u = al2_openmm.energy(x)
    assert torch.isfinite(u[[0, 1, 3]]).all() and not torch.isfinite(u[2])


@pytest.mark.parametrize("name", ["al2", "al3"])
def test_torch_and_openmm_backends_agree(name):
    torch_target = load_target(name)
    openmm_target = load_target(name, backend="openmm")
    x = torch.tensor(_frames(torch_target, 16, scale=0.005, seed=1))
    u_t, f_t = torch_target.energy_and_forces(x)
    u_o, f_o = openmm_target.energy_and_forces(x)
    np.testing.assert_allclose(u_t.numpy(), u_o.numpy(), rtol=1e-6)
    err = (f_t - f_o).abs().max() / f_o.abs().max()
    assert err < 1e-5


def test_generic_peptide_and_spec_overrides():
    t = load_target("peptide", sequence="ACE-GLY-NME", forcefield="amber99sbildn", solvent="vacuum",
                    temperature=350.0)
    assert t.n_atoms == 19 and t.temperature == 350.0
    hot = load_target("al2", temperature=600.0)
    x = torch.tensor(_frames(hot, 2))
    cold = load_target("al2")
    np.testing.assert_allclose(hot.energy(x).numpy() * 600.0, cold.energy(x).numpy() * 300.0, rtol=1e-10)
    with pytest.raises(ValueError, match="backend"):
        load_target("al2", backend="jax")


def test_synthetic_targets_load_without_openmm():
    """On a machine without OpenMM (a GPU node running an EBM) the synthetic targets still load;
    a peptide target says which package it needs."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['openmm'] = None\n"
            "from boltzflow.targets import exact_sampler_names, load_target\n"
            "assert 'gmm4_d16' in exact_sampler_names() and load_target('rings').dim == 2\n"
            "from boltzflow.targets import names_of_kind, target_kind\n"
            "assert names_of_kind('peptide') == ['al2', 'al3', 'al4'] and target_kind('peptide') == 'peptide'\n"
            "try:\n    load_target('al2')\nexcept ModuleNotFoundError as err:\n    print(err)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "target 'al2' needs the package openmm" in proc.stdout


# The lists the workflow used before each target declared its kind (sgds/run.py, common.smk).
OLD_PARTICLE_TARGETS = ["lj13", "lj55", "dw4"]
OLD_PEPTIDE_TARGETS = ["al2", "al3", "al4"]
OLD_EXACT_SAMPLERS = ["checkerboard", "eight_gaussians", "funnel10", "gmm40", "gmm4_d16", "gmm4_d32", "gmm4_d64",
                      "manywell128", "manywell32", "manywell64", "mixture2d_weights", "rings"]


def test_declared_kinds_give_the_old_lists():
    assert names_of_kind("particle") == OLD_PARTICLE_TARGETS
    assert names_of_kind("peptide") == OLD_PEPTIDE_TARGETS
    assert exact_sampler_names() == OLD_EXACT_SAMPLERS
    assert sorted(names_of_kind("density")) == OLD_EXACT_SAMPLERS
    assert sgds_target_names() == OLD_EXACT_SAMPLERS + OLD_PARTICLE_TARGETS + OLD_PEPTIDE_TARGETS
    assert [n for n in target_names() if needs_reference_file(n)] == sorted(OLD_PARTICLE_TARGETS + OLD_PEPTIDE_TARGETS)
    assert target_kind("peptide") == "peptide"  # the custom-sequence recipe: a peptide, but no system by itself
    assert {target_kind(n) for n in target_names()} == set(KINDS)
    with pytest.raises(ValueError, match="kind"):
        names_of_kind("molecule")


def test_the_catalogue_names_the_targets_the_factories_build():
    """The catalogue (read without torch) and the factories name the same targets, and each
    catalogued exact-sampler flag is what the target's class does."""
    from boltzflow.targets.base import Target
    from boltzflow.targets.catalogue import CATALOGUE
    from boltzflow.targets.peptide import PeptideTarget
    from boltzflow.targets.registry import registered_names

    assert registered_names() == target_names()
    for name, entry in CATALOGUE.items():
        cls = PeptideTarget if entry.kind == "peptide" else type(load_target(name))  # a peptide takes OpenMM
        assert (cls.sample is not Target.sample) == entry.exact_sampler, name

