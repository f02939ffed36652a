"""The torch engine samples the same distribution as OpenMM (al2 at 300 K, small size).

OpenMM's LangevinMiddleIntegrator at 1 fs with the System's own masses is the reference. The
torch engine runs the default config's scheme: BAOAB at 3 fs with 4 amu hydrogens and a
2-temperature ladder (300 K, 420 K), only the 300 K frames compared. Compared: the mean reduced potential energy, its
standard deviation, and the populations of the two phi < 0 basins (alpha_R and beta; the phi > 0
states are too rare at this size). Each difference must be within 4 combined standard errors
(block bootstrap over chains, boltzflow.md.convergence), so a correct engine fails about once in
15,000 runs per quantity, while a wrong temperature of 5 % (about 1.4 kT in the mean energy)
or a broken force fails clearly. The full-size comparison is the report of ``bench_md``.
"""

import mdtraj
import numpy as np
import pytest
import torch
from boltzflow.evaluation import conformational_states
from boltzflow.io import read_sample_set
from boltzflow.md import (
    MDSettings,
    TorchMDSettings,
    bootstrap_population,
    run_parallel_tempering,
    run_replica,
)
from boltzflow.systems import backbone_dihedrals

TOLERANCE_SE = 4.0


def _summaries(path, topology):
    samples = read_sample_set(path)
    replica = samples.columns["replica"].to_numpy()
    time_ps = samples.columns["time_ps"].to_numpy()
    energy = samples.energy
    states = conformational_states(backbone_dihedrals(samples.x, topology)).state_ALA2
    out = {
        "mean energy": bootstrap_population(energy, replica, time_ps, n_boot=300),
        "energy variance": bootstrap_population((energy - energy.mean()) ** 2, replica, time_ps, n_boot=300),
    }
    for state in ("alpha_R", "beta"):
        out[state] = bootstrap_population((states == state).to_numpy(float), replica, time_ps, n_boot=300)
    return out


@pytest.fixture(scope="module")
def openmm_reference(al2, tmp_path_factory):
    """400 ps of OpenMM Reference Langevin at 1 fs (2 replicas of 200 ps), frames every 0.2 ps."""
    folder = tmp_path_factory.mktemp("openmm")
    settings = MDSettings(timestep_fs=1.0, equilibration_ps=10, length_ps=200, save_interval_ps=0.2,
                          checkpoint_interval_ps=200, platform="Reference", seed=11)
    paths = []
    for replica in range(2):
        paths.append(folder / f"r{replica}.parquet")
        run_replica(al2.system, al2.positions, 300.0, settings, replica, paths[-1], folder / f"ck{replica}",
                    target="al2")
    from boltzflow.md import gather_replicas

    gather_replicas(paths, folder / "frames.parquet", target="al2")
    return _summaries(folder / "frames.parquet", mdtraj.Topology.from_openmm(al2.topology))


def test_torch_engine_matches_openmm(al2, openmm_reference, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = TorchMDSettings(
            temperature_K=300.0, timestep_fs=3.0, hydrogen_mass_amu=4.0, n_ladders=40, n_temperatures=2,
            max_temperature_K=420.0, exchange_interval_ps=0.03, equilibration_ps=6.0, length_ps=18.0,
            save_interval_ps=0.3, checkpoint_interval_ps=18.0, seed=5, compile=False)
        run_parallel_tempering(al2.system, al2.positions, settings, tmp_path / "torch.parquet", tmp_path / "ck",
                               target="al2", topology=al2.topology)
    finally:
        torch.set_num_threads(threads)
    ours = _summaries(tmp_path / "torch.parquet", mdtraj.Topology.from_openmm(al2.topology))
    for name, reference in openmm_reference.items():
        mine = ours[name]
        se = np.hypot(mine["se"], reference["se"])
        difference = mine["population"] - reference["population"]
        assert abs(difference) <= TOLERANCE_SE * se, (
            f"{name}: torch {mine['population']:.4f} +- {mine['se']:.4f} vs OpenMM "
            f"{reference['population']:.4f} +- {reference['se']:.4f}")
    # the comparison has teeth: the OpenMM mean energy is known to well under 1 kT
    assert openmm_reference["mean energy"]["se"] < 0.5
