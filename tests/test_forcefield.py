"""TorchForceField against OpenMM's Reference platform (double precision), the oracle.

Every peptide is checked on its minimised structure, on snapshots of a short Langevin run at
its temperature and on randomly perturbed structures: total energies, per-force-class energies
(through force groups) and forces, in float64 and float32. Smaller synthetic systems cover the
corners real peptides rarely reach (engulfed atoms in the Born integrals, cutoffs shorter than
the molecule, switching functions, arbitrary torsion phases).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import openmm
import openmm.unit as unit
import pytest
import torch
from boltzflow.systems import build_peptide, get_spec
from boltzflow.targets.forcefield import ONE_4PI_EPS0, TorchForceField, UnsupportedForceError
from boltzflow.units import MOLAR_GAS_CONSTANT

KJ = unit.kilojoule_per_mole
KJ_NM = unit.kilojoule_per_mole / unit.nanometer

PEPTIDES = {
    "al2": {},
    "al3": {},
    "al4": {},
    "peptide-x": dict(sequence="ACE-GLY-SER-LYS-NME", forcefield="amber14-all", solvent="obc2", temperature=300),
    "p2": dict(sequence="ACE-ASP-PHE-NME", forcefield="amber99sbildn", solvent="vacuum", temperature=300),
    # cutoff shorter than the molecule: the cutoff branches of the non-bonded and GB terms act
    "p3": dict(sequence="ALA-GLU-TRP", forcefield="amber14-all", solvent="obc1", temperature=310,
               nonbonded="CutoffNonPeriodic", cutoff_nm=1.0),
}

# Tolerances. float64: energies 1e-6 relative, forces 1e-5 of the largest force; float32: 1e-4 in
# both. Energies near zero (|E| below a tenth of sum |terms|) are held to the tolerance times
# 0.1 sum |terms|: rounding the coordinates to float32 alone moves the energy by
# ~sum_i |F_i| 6e-8 nm ~ 1e-3 kJ/mol at 300 K, whatever the total. Forces likewise have a floor
# of 1000 kJ/mol/nm in float32: rounding moves a bond force by k_bond * 6e-8 nm ~ 0.02 kJ/mol/nm,
# which exceeds 1e-4 of the ~1 kJ/mol/nm left at a minimum.
E_TOL = {torch.float64: 1e-6, torch.float32: 1e-4}
F_TOL = {torch.float64: 1e-5, torch.float32: 1e-4}
F_FLOOR = {torch.float64: 0.0, torch.float32: 1000.0}


def _reference_platform() -> openmm.Platform:
    return openmm.Platform.getPlatformByName("Reference")


def _copy(system: openmm.System) -> openmm.System:
    return openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))


@dataclass
class Reference:
    """OpenMM Reference energies (K,), forces (K, N, 3) and energies per force class."""

    energies: np.ndarray
    forces: np.ndarray
    by_class: dict[str, np.ndarray]


def openmm_reference(system: openmm.System, configs: np.ndarray) -> Reference:
    system = _copy(system)
    classes: list[str] = []
    for force in system.getForces():
        name = type(force).__name__
        if name not in classes:
            classes.append(name)
        force.setForceGroup(classes.index(name))
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), _reference_platform())
    energies, forces = [], []
    by_class: dict[str, list[float]] = {name: [] for name in classes}
    for positions in configs:
        context.setPositions(positions * unit.nanometer)
        state = context.getState(getEnergy=True, getForces=True)
        energies.append(state.getPotentialEnergy().value_in_unit(KJ))
        forces.append(state.getForces(asNumpy=True).value_in_unit(KJ_NM))
        for group, name in enumerate(classes):
            group_state = context.getState(getEnergy=True, groups={group})
            by_class[name].append(group_state.getPotentialEnergy().value_in_unit(KJ))
    return Reference(np.array(energies), np.array(forces), {k: np.array(v) for k, v in by_class.items()})


def assert_matches(energies, forces, ref: Reference, dtype: torch.dtype, label: str) -> None:
    """Total energies and forces against the reference, with the tolerances above."""
    energies = energies.detach().cpu().double().numpy()
    forces = forces.detach().cpu().double().numpy().reshape(ref.forces.shape)
    scale = sum(np.abs(v) for v in ref.by_class.values())  # sum |terms| per configuration
    e_err = np.abs(energies - ref.energies)
    e_allowed = E_TOL[dtype] * np.maximum(np.abs(ref.energies), 0.1 * scale)
    assert np.all(e_err <= e_allowed), (
        f"{label}: energy errors {e_err} exceed {e_allowed} (reference {ref.energies})")
    f_err = np.linalg.norm(forces - ref.forces, axis=2).max(axis=1)
    f_max = np.maximum(np.linalg.norm(ref.forces, axis=2).max(axis=1), F_FLOOR[dtype])
    assert np.all(f_err <= F_TOL[dtype] * f_max), (
        f"{label}: force errors {f_err} exceed {F_TOL[dtype]} x {f_max}")


def _as_batch(configs: np.ndarray, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(configs.reshape(len(configs), -1), dtype=dtype)


# --------------------------------------------------------------------------------------------
# Peptides
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    system: openmm.System
    temperature: float
    configs: np.ndarray  # (K, N, 3) nm
    ref: Reference


def _short_md(system: openmm.System, positions: np.ndarray, temperature: float, snapshots: int = 2,
              steps_between: int = 1000) -> list[np.ndarray]:
    """Snapshots of a Langevin run (1 fs steps) started from ``positions``."""
    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin, 5.0 / unit.picosecond,
                                                 0.001 * unit.picosecond)
    integrator.setRandomNumberSeed(2024)
    context = openmm.Context(system, integrator, _reference_platform())
    context.setPositions(positions * unit.nanometer)
    context.setVelocitiesToTemperature(temperature * unit.kelvin, 7)
    frames = []
    for _ in range(snapshots):
        integrator.step(steps_between)
        state = context.getState(getPositions=True)
        frames.append(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    return frames


@pytest.fixture(scope="module", params=list(PEPTIDES))
def case(request) -> Case:
    name = request.param
    built = build_peptide(get_spec(name, **PEPTIDES[name]))
    temperature = built.spec.temperature
    rng = np.random.default_rng(11)
    minimised = built.positions
    md = _short_md(built.system, minimised, temperature)
    configs = [
        minimised,
        *md,
        minimised + rng.normal(0.0, 0.01, minimised.shape),
        minimised + rng.normal(0.0, 0.02, minimised.shape),
        md[-1] + rng.normal(0.0, 0.015, minimised.shape),
    ]
    configs = np.array(configs)
    return Case(name, built.system, temperature, configs, openmm_reference(built.system, configs))


def test_float64_matches_openmm(case: Case):
    ff = TorchForceField(case.system, compile=False)
    x = _as_batch(case.configs)
    energies, forces = ff.energy_and_forces(x)
    assert energies.dtype == torch.float64 and energies.shape == (len(x),)
    assert forces.dtype == torch.float64 and forces.shape == x.shape
    assert_matches(energies, forces, case.ref, torch.float64, case.name)
    # forward agrees with energy_and_forces
    torch.testing.assert_close(ff(x), energies, rtol=1e-12, atol=0)


def test_terms_match_force_groups(case: Case):
    ff = TorchForceField(case.system, compile=False)
    terms = ff.energy_terms(_as_batch(case.configs))
    assert sorted(terms) == sorted(case.ref.by_class) == sorted(ff.terms)
    for name, reference in case.ref.by_class.items():
        error = np.abs(terms[name].numpy() - reference)
        assert np.all(error <= 1e-7 * np.maximum(np.abs(reference), 1.0)), (case.name, name, error, reference)


def test_float32_matches_openmm(case: Case):
    ff = TorchForceField(case.system, compile=False)
    energies, forces = ff.energy_and_forces(_as_batch(case.configs, torch.float32))
    assert energies.dtype == torch.float32 and forces.dtype == torch.float32
    assert_matches(energies, forces, case.ref, torch.float32, case.name)


def test_analytic_forces_equal_autograd(case: Case):
    """The hand-written forces are the gradient of the (autograd-differentiable) energy."""
    ff = TorchForceField(case.system, compile=False)
    x = _as_batch(case.configs)
    _, forces = ff.energy_and_forces(x)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ff._energy_autograd(xg).sum(), xg)
    scale = forces.abs().max(dim=1, keepdim=True).values
    assert torch.all((forces + grad).abs() <= 1e-10 * scale)


def test_reduced_units(case: Case):
    ff_kj = TorchForceField(case.system, compile=False)
    ff_kt = TorchForceField(case.system, case.temperature, compile=False)
    x = _as_batch(case.configs[:2])
    kt = MOLAR_GAS_CONSTANT * case.temperature
    assert MOLAR_GAS_CONSTANT == unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin)  # written out in units.py
    e_kj, f_kj = ff_kj.energy_and_forces(x)
    e_kt, f_kt = ff_kt.energy_and_forces(x)
    torch.testing.assert_close(e_kt * kt, e_kj, rtol=1e-13, atol=0)
    torch.testing.assert_close(f_kt * kt, f_kj, rtol=1e-13, atol=1e-10)


# --------------------------------------------------------------------------------------------
# Batches, autograd, input checks
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def al2():
    built = build_peptide(get_spec("al2"))
    return built


def _noisy(built, n: int, sigma: float = 0.01, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    x = built.positions.reshape(1, -1) + rng.normal(0.0, sigma, (n, built.dim))
    return torch.tensor(x, dtype=dtype)


def test_batch_equals_single_configurations(al2):
    ff = TorchForceField(al2.system, compile=False)
    chunk = ff._chunk_size(torch.device("cpu"))
    x = _noisy(al2, 5 * chunk + 7)  # several chunks and a short one
    energies, forces = ff.energy_and_forces(x)
    picks = [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk, len(x) - 1]
    for k in picks:
        e1, f1 = ff.energy_and_forces(x[k:k + 1])
        torch.testing.assert_close(e1, energies[k:k + 1], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(f1, forces[k:k + 1], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(ff(x), energies, rtol=1e-12, atol=0)


def test_non_finite_row_stays_in_its_row(al2):
    ff = TorchForceField(al2.system, compile=False)
    x = _noisy(al2, 5)
    clean_e, clean_f = ff.energy_and_forces(x)
    x[2, 7] = float("nan")
    x[4, :] = float("inf")
    energies, forces = ff.energy_and_forces(x)
    assert not torch.isfinite(energies[2]) and not torch.isfinite(energies[4])
    keep = [0, 1, 3]
    torch.testing.assert_close(energies[keep], clean_e[keep], rtol=0, atol=0)
    torch.testing.assert_close(forces[keep], clean_f[keep], rtol=0, atol=0)
    assert not torch.isfinite(ff(x)[2])


def test_autograd_first_and_second_derivatives(al2):
    ff = TorchForceField(al2.system, 300.0, compile=False)
    x = _noisy(al2, 3).requires_grad_(True)
    energy = ff(x)
    (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=True)
    _, forces = ff.energy_and_forces(x.detach())
    torch.testing.assert_close(grad.detach(), -forces, rtol=1e-12, atol=1e-9)
    # Hessian-vector product through the double-backward path against central differences
    v = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (hv,) = torch.autograd.grad((grad * v).sum(), x)
    h = 1e-6
    _, f_plus = ff.energy_and_forces(x.detach() + h * v)
    _, f_minus = ff.energy_and_forces(x.detach() - h * v)
    fd = -(f_plus - f_minus) / (2 * h)
    assert torch.all((hv - fd).abs() <= 1e-5 * fd.abs().max())
    # gradients reach parameters upstream of x
    shift = torch.zeros(1, x.shape[1], dtype=torch.float64, requires_grad=True)
    ff(x.detach() + shift).sum().backward()
    torch.testing.assert_close(shift.grad[0], -forces.sum(0), rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("shape", [(4, 65), (66,), (4, 22, 3), (0,)])
def test_wrong_shape_raises(al2, shape):
    ff = TorchForceField(al2.system, compile=False)
    with pytest.raises(ValueError, match=r"\(B, 3N\)"):
        ff(torch.zeros(shape, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(B, 3N\)"):
        ff.energy_and_forces(torch.zeros(shape, dtype=torch.float64))


def test_wrong_dtype_and_options_raise(al2):
    ff = TorchForceField(al2.system, compile=False)
    with pytest.raises(ValueError, match="float32 or float64"):
        ff(torch.zeros(2, 66, dtype=torch.int64))
    with pytest.raises(ValueError, match="compile"):
        TorchForceField(al2.system, compile="yes")
    with pytest.raises(ValueError, match="temperature"):
        TorchForceField(al2.system, -1.0)
    assert ff.n_atoms == 22 and ff.dim == 66
    assert ff.terms == ["HarmonicBondForce", "PeriodicTorsionForce", "NonbondedForce", "GBSAOBCForce",
                        "HarmonicAngleForce"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(al2):  # pragma: no cover - needs a GPU
    ff = TorchForceField(al2.system, compile=False)
    x = _noisy(al2, 64)
    e_cpu, f_cpu = ff.energy_and_forces(x)
    e_gpu, f_gpu = ff.energy_and_forces(x.cuda())
    assert e_gpu.device.type == "cuda"
    torch.testing.assert_close(e_gpu.cpu(), e_cpu, rtol=1e-10, atol=1e-8)
    torch.testing.assert_close(f_gpu.cpu(), f_cpu, rtol=1e-10, atol=1e-6)


# --------------------------------------------------------------------------------------------
# The compiled fast path
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def p3():
    return build_peptide(get_spec("p3", **PEPTIDES["p3"]))


@pytest.mark.parametrize("system_name", ["al2", "p3"])
def test_compiled_path_matches_eager_and_openmm(system_name, al2, p3):
    """``compile=True`` kernels (float32, the production path) against eager and OpenMM.

    For al2 (chunks of 270 configurations) the batch of 400 ends in a padded compiled chunk; for
    p3 (chunks of 64) it ends in a short chunk that runs eagerly."""
    built = al2 if system_name == "al2" else p3
    eager = TorchForceField(built.system, 300.0, compile=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed compilation must not pass silently
        compiled = TorchForceField(built.system, 300.0, compile=True)
        x64 = _noisy(built, 400, sigma=0.01, seed=5)
        x64[0] = torch.tensor(built.positions.reshape(-1))
        x = x64.float()
        bad = [17, 350]
        for row in bad:
            x[row, 3] = float("nan")
        e_c, f_c = compiled.energy_and_forces(x)
        assert compiled._compiled, "the compiled kernel was not used"
        e_plain = compiled(x) if system_name == "al2" else None
    e_e, f_e = eager.energy_and_forces(x)
    finite = torch.ones(len(x), dtype=torch.bool)
    finite[bad] = False
    assert not torch.isfinite(e_c[bad]).any() and torch.isfinite(e_c[finite]).all()
    assert torch.isfinite(f_c[finite]).all()
    # compiled vs eager, both float32
    torch.testing.assert_close(e_c[finite], e_e[finite], rtol=1e-5, atol=1e-4)
    kt = MOLAR_GAS_CONSTANT * 300.0
    floor = F_FLOOR[torch.float32] / kt  # float32 noise floor of the forces, see F_FLOOR
    scale = f_e[finite].abs().max(dim=1, keepdim=True).values.clamp(min=floor)
    assert torch.all((f_c[finite] - f_e[finite]).abs() <= 1e-5 * scale)
    if e_plain is not None:
        torch.testing.assert_close(e_plain[finite], e_e[finite], rtol=1e-5, atol=1e-4)
    # compiled vs OpenMM on rows of different chunks
    rows = [0, 1, 150, 290, 399]
    ref = openmm_reference(built.system, x64[rows].numpy().reshape(len(rows), -1, 3))
    assert_matches(e_c[rows] * kt, f_c[rows] * kt, ref, torch.float32, f"{system_name} compiled")


# --------------------------------------------------------------------------------------------
# Corner cases on modified and synthetic systems
# --------------------------------------------------------------------------------------------


def _check_against_openmm(system: openmm.System, configs: np.ndarray, label: str) -> None:
    ref = openmm_reference(system, configs)
    ff = TorchForceField(system, compile=False)
    energies, forces = ff.energy_and_forces(_as_batch(configs))
    assert_matches(energies, forces, ref, torch.float64, label)
    terms = ff.energy_terms(_as_batch(configs))
    for name, reference in ref.by_class.items():
        if name in terms:
            assert np.allclose(terms[name].numpy(), reference, rtol=1e-9, atol=1e-9), (label, name)
        else:  # ignored forces carry no energy
            assert name == "CMMotionRemover" and np.all(reference == 0.0)


def test_coulomb_constant_is_openmm_s():
    system = openmm.System()
    for _ in range(2):
        system.addParticle(1.0)
    nb = openmm.NonbondedForce()
    nb.addParticle(1.0, 0.1, 0.0)
    nb.addParticle(-1.0, 0.1, 0.0)
    system.addForce(nb)
    configs = np.array([[[0, 0, 0], [0.5, 0, 0]]], dtype=float)
    ref = openmm_reference(system, configs)
    assert ref.energies[0] == pytest.approx(-ONE_4PI_EPS0 / 0.5, rel=1e-15)
    _check_against_openmm(system, configs, "two charges")


def test_al2_with_cutoffs_reaction_field_and_switching(al2):
    """al2 with CutoffNonPeriodic (0.6 nm) on both the non-bonded and GB forces, a reaction-field
    dielectric of 78.3 and an LJ switch from 0.5 nm: every cutoff branch acts."""
    system = _copy(al2.system)
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setNonbondedMethod(openmm.NonbondedForce.CutoffNonPeriodic)
            force.setCutoffDistance(0.6)
            force.setReactionFieldDielectric(78.3)
            force.setUseSwitchingFunction(True)
            force.setSwitchingDistance(0.5)
        if isinstance(force, openmm.GBSAOBCForce):
            force.setNonbondedMethod(openmm.GBSAOBCForce.CutoffNonPeriodic)
            force.setCutoffDistance(0.6)
    system.addForce(openmm.CMMotionRemover())  # no energy: accepted and ignored
    rng = np.random.default_rng(4)
    configs = np.array([al2.positions + rng.normal(0.0, s, al2.positions.shape) for s in (0.0, 0.01, 0.03)])
    distances = np.linalg.norm(configs[:, :, None] - configs[:, None], axis=-1)
    assert distances.max() > 0.6  # pairs beyond the cutoff exist
    _check_against_openmm(system, configs, "al2 with cutoffs")


def _synthetic_gb(kind: str, cutoff: float | None, n: int = 8) -> tuple[openmm.System, np.ndarray, np.ndarray]:
    """``n`` charged spheres with a GB force only; radii and scale factors (up to 1.6) chosen so that
    random configurations contain engulfed atoms and atoms entirely inside another's sphere."""
    from openmm.app.internal.customgbforces import GBSAOBC1Force, GBSAOBC2Force

    rng = np.random.default_rng(3)
    charge, radius, scale = rng.normal(0.0, 0.5, n), rng.uniform(0.1, 0.25, n), rng.uniform(0.7, 1.6, n)
    system = openmm.System()
    for _ in range(n):
        system.addParticle(1.0)
    if kind == "GBSAOBCForce":
        force = openmm.GBSAOBCForce()
        for i in range(n):
            force.addParticle(charge[i], radius[i], scale[i])
        force.setSolventDielectric(80.0)
        force.setSoluteDielectric(2.0)
        force.setSurfaceAreaEnergy(3.0)
        if cutoff is not None:
            force.setNonbondedMethod(openmm.GBSAOBCForce.CutoffNonPeriodic)
            force.setCutoffDistance(cutoff)
    else:
        cls = GBSAOBC1Force if kind == "obc1" else GBSAOBC2Force
        force = cls(solventDielectric=80.0, soluteDielectric=2.0, SA="ACE", cutoff=cutoff)
        for i in range(n):
            force.addParticle([charge[i], radius[i], scale[i]])
        force.finalize()
        if cutoff is not None:
            force.setNonbondedMethod(openmm.CustomGBForce.CutoffNonPeriodic)
            force.setCutoffDistance(cutoff)
    system.addForce(force)
    offset_radius = radius - 0.009
    return system, offset_radius, offset_radius * scale


@pytest.mark.parametrize("kind", ["GBSAOBCForce", "obc1", "obc2"])
@pytest.mark.parametrize("cutoff", [None, 0.4])
def test_synthetic_generalized_born(kind, cutoff):
    system, o, s = _synthetic_gb(kind, cutoff)
    configs = np.array([np.random.default_rng(k).uniform(0.0, 0.6, (len(o), 3)) for k in range(30)])
    r = np.linalg.norm(configs[:, :, None] - configs[:, None], axis=-1)
    off = ~np.eye(len(o), dtype=bool)[None]
    assert np.sum((o[None, :, None] < s[None, None, :] - r) & off) > 0  # engulfed atoms occur
    assert np.sum((r + s[None, None, :] <= o[None, :, None]) & off) > 0  # screening sphere inside
    if cutoff is not None:
        assert np.sum((r > cutoff) & off) > 0
    _check_against_openmm(system, configs, f"synthetic {kind} cutoff={cutoff}")


def test_torsion_phases_periodicities_and_angles():
    system = openmm.System()
    for _ in range(5):
        system.addParticle(1.0)
    torsions = openmm.PeriodicTorsionForce()
    for periodicity, phase, k in [(1, 0.7, 3.0), (2, -1.2, 1.5), (3, 2.5, 0.8), (6, 0.3, 0.4)]:
        torsions.addTorsion(0, 1, 2, 3, periodicity, phase, k)
        torsions.addTorsion(1, 2, 3, 4, periodicity, phase + 0.2, k)
    torsions.addTorsion(4, 2, 1, 0, 2, 1.0, 2.0)  # an improper-like quartet
    system.addForce(torsions)
    angles = openmm.HarmonicAngleForce()
    angles.addAngle(0, 1, 2, 1.9, 300.0)
    angles.addAngle(1, 2, 3, 2.0, 200.0)
    system.addForce(angles)
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(3, 4, 0.15, 1000.0)
    system.addForce(bonds)
    configs = np.array([np.random.default_rng(k).uniform(0.0, 0.5, (5, 3)) for k in range(25)])
    _check_against_openmm(system, configs, "torsions")


# --------------------------------------------------------------------------------------------
# Refused systems
# --------------------------------------------------------------------------------------------


def _with_force(built, force: openmm.Force) -> openmm.System:
    system = _copy(built.system)
    system.addForce(force)
    return system


@pytest.mark.parametrize("make, name", [
    (lambda: openmm.CustomBondForce("k*r^2"), "CustomBondForce"),
    (lambda: openmm.AndersenThermostat(300.0, 1.0), "AndersenThermostat"),
    (lambda: openmm.MonteCarloBarostat(1.0, 300.0), "MonteCarloBarostat"),
    (lambda: openmm.CustomExternalForce("x^2"), "CustomExternalForce"),
])
def test_unsupported_force_classes_are_named(al2, make, name):
    with pytest.raises(UnsupportedForceError, match=name):
        TorchForceField(_with_force(al2, make()))


def test_unsupported_nonbonded_settings_are_named(al2):
    system = _copy(al2.system)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded.setNonbondedMethod(openmm.NonbondedForce.PME)
    with pytest.raises(UnsupportedForceError, match="NonbondedForce.*PME"):
        TorchForceField(system)

    system = _copy(al2.system)
    nonbonded = next(f for f in system.getForces() if isinstance(f, openmm.NonbondedForce))
    nonbonded.addGlobalParameter("lambda", 1.0)
    nonbonded.addParticleParameterOffset("lambda", 0, 0.1, 0.0, 0.0)
    with pytest.raises(UnsupportedForceError, match="NonbondedForce.*global parameters"):
        TorchForceField(system)

    system = _copy(al2.system)
    gb = next(f for f in system.getForces() if isinstance(f, openmm.GBSAOBCForce))
    gb.setNonbondedMethod(openmm.GBSAOBCForce.CutoffPeriodic)
    with pytest.raises(UnsupportedForceError, match="GBSAOBCForce.*CutoffPeriodic"):
        TorchForceField(system)


def test_unrecognised_custom_gb_forces_are_refused():
    from openmm.app.internal.customgbforces import GBSAHCTForce, GBSAOBC2Force

    def system_with(force):
        system = openmm.System()
        for _ in range(2):
            system.addParticle(1.0)
        force.addParticle([0.5, 0.15, 0.8])
        force.addParticle([-0.5, 0.15, 0.8])
        force.finalize()
        system.addForce(force)
        return system

    with pytest.raises(UnsupportedForceError, match="CustomGBForce.*computed value 'B'"):
        TorchForceField(system_with(GBSAHCTForce(SA="ACE")))
    with pytest.raises(UnsupportedForceError, match="CustomGBForce.*kappa"):
        TorchForceField(system_with(GBSAOBC2Force(SA="ACE", kappa=0.5)))
    # the recognised form, as a control
    TorchForceField(system_with(GBSAOBC2Force(SA="ACE")))
    TorchForceField(system_with(GBSAOBC2Force(SA=None)))


def test_virtual_sites_are_refused():
    system = openmm.System()
    for _ in range(3):
        system.addParticle(1.0)
    system.setVirtualSite(2, openmm.TwoParticleAverageSite(0, 1, 0.5, 0.5))
    bonds = openmm.HarmonicBondForce()
    bonds.addBond(0, 1, 0.1, 1000.0)
    system.addForce(bonds)
    with pytest.raises(UnsupportedForceError, match="virtual site"):
        TorchForceField(system)
