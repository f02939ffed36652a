import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import openmm
import pytest
from boltzflow.io import read_sample_set
from boltzflow.md import MDSettings, choose_platform, gather_replicas, reduced_energies, replica_seed, run_replica
from boltzflow.units import kT_kJ_per_mol


def test_settings_step_arithmetic():
    s = MDSettings(timestep_fs=2.0, length_ps=10.0, save_interval_ps=0.5, equilibration_ps=3.0,
                   checkpoint_interval_ps=2.0)
    assert (s.steps_per_frame, s.n_frames, s.equilibration_steps, s.frames_per_checkpoint) == (250, 20, 1500, 4)
    with pytest.raises(ValueError, match="not a whole number of time steps"):
        MDSettings(timestep_fs=3.0, save_interval_ps=0.001).steps_per_frame


def test_replica_seeds_differ_and_are_positive():
    seeds = {replica_seed(0, r) for r in range(100)} | {replica_seed(1, r) for r in range(100)}
    assert len(seeds) == 200 and min(seeds) > 0


def test_reduced_energy_matches_openmm(al2):
    xyz = al2.positions[None] + np.random.default_rng(0).normal(scale=0.002, size=(3, al2.n_atoms, 3))
    u = reduced_energies(al2.system, 300.0, xyz)
    context = openmm.Context(al2.system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    for frame, value in zip(xyz, u):
        context.setPositions(frame)
        e = context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(openmm.unit.kilojoule_per_mole)
        assert value == pytest.approx(e / (0.0083144626 * 300.0), rel=1e-7)
    assert kT_kJ_per_mol(300.0) == pytest.approx(2.494339, rel=1e-6)


def test_auto_platform_is_measured(al2):
    name, measured = choose_platform(al2.system, al2.positions, 300.0, MDSettings())
    assert set(measured) >= {"Reference", "CPU"}
    assert all(v > 0 for v in measured.values())
    assert name == max(measured, key=measured.get)
    with pytest.raises(RuntimeError, match="not available here"):
        choose_platform(al2.system, al2.positions, 300.0, MDSettings(platform="NoSuchPlatform"))


def test_replica_output_and_gather(al2, tmp_path):
    s = MDSettings(equilibration_ps=0.5, length_ps=3.0, save_interval_ps=0.1, checkpoint_interval_ps=1.0,
                   platform="Reference", seed=5)
    paths = []
    for r in range(2):
        paths.append(tmp_path / f"r{r}.parquet")
        summary = run_replica(al2.system, al2.positions, 300.0, s, r, paths[-1], tmp_path / f"ck{r}", target="al2")
        assert summary["platform"] == "Reference" and summary["frames"] == 30
        assert not (tmp_path / f"ck{r}").exists()  # checkpoints are removed once the output exists
    one = read_sample_set(paths[0], expected_dim=66)
    assert len(one) == 30 and np.isfinite(one.energy).all()
    np.testing.assert_allclose(one.columns["time_ps"], np.arange(1, 31) * 0.1)
    # energies stored are the reduced energies of the stored coordinates (to float32 rounding of x)
    u = reduced_energies(al2.system, 300.0, one.x.reshape(30, 22, 3).astype(np.float64))
    np.testing.assert_allclose(u, one.energy, atol=0.05)
    # equilibrium energies at 300 K: far below the minimised structure's + a few kT per dof
    assert one.energy.std() > 1.0
    n = gather_replicas(paths, tmp_path / "frames.parquet", target="al2")
    frames = read_sample_set(tmp_path / "frames.parquet")
    assert n == 60 and list(np.unique(frames.columns["replica"])) == [0, 1]
    assert not np.allclose(frames.x[:30], frames.x[30:])  # replicas are independent


KILL_SCRIPT = """
import sys, openmm, numpy as np
from boltzflow.md import MDSettings, run_replica
system = openmm.XmlSerializer.deserialize(open(sys.argv[1]).read())
pos = np.load(sys.argv[2])
s = MDSettings(equilibration_ps=2, length_ps=100, save_interval_ps=1, checkpoint_interval_ps=5,
               platform="Reference", seed=2)
run_replica(system, pos, 300.0, s, 0, sys.argv[3], sys.argv[4], target="al2")
"""


def test_killed_replica_resumes_to_the_same_trajectory(al2, tmp_path, caplog):
    """SIGKILL a replica mid-run; the re-run resumes from its checkpoint and the result is
    bitwise what an uninterrupted run writes."""
    xml, pos = tmp_path / "system.xml", tmp_path / "pos.npy"
    xml.write_text(openmm.XmlSerializer.serialize(al2.system))
    np.save(pos, al2.positions)
    out, ckpt = tmp_path / "killed.parquet", tmp_path / "killed.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(xml), str(pos), str(out), str(ckpt)])
    index = ckpt / "progress.json"
    deadline = time.time() + 120
    frames_done = 0
    while time.time() < deadline and proc.poll() is None:
        if index.exists():
            frames_done = json.loads(index.read_text())["frames_done"]
            if frames_done >= 10:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the replica finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists() and 10 <= frames_done < 100

    s = MDSettings(equilibration_ps=2, length_ps=100, save_interval_ps=1, checkpoint_interval_ps=5,
                   platform="Reference", seed=2)
    with caplog.at_level(logging.INFO, logger="boltzflow.md"):
        run_replica(al2.system, al2.positions, 300.0, s, 0, out, ckpt, target="al2")
    assert "resuming from checkpoint" in caplog.text
    run_replica(al2.system, al2.positions, 300.0, s, 0, tmp_path / "straight.parquet",
                tmp_path / "straight.ckpt", target="al2")
    resumed, straight = read_sample_set(out), read_sample_set(tmp_path / "straight.parquet")
    assert len(resumed) == 100
    np.testing.assert_array_equal(resumed.x, straight.x)
    np.testing.assert_array_equal(resumed.energy, straight.energy)


def test_checkpoint_from_other_settings_is_ignored(al2, tmp_path, caplog):
    s = MDSettings(equilibration_ps=0, length_ps=2, save_interval_ps=0.5, checkpoint_interval_ps=0.5,
                   platform="Reference")
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    (ckpt / "progress.json").write_text(json.dumps({"identity": "other", "generation": 1}))
    with caplog.at_level(logging.WARNING, logger="boltzflow.md"):
        run_replica(al2.system, al2.positions, 300.0, s, 0, tmp_path / "o.parquet", ckpt, target="al2")
    assert "made with other settings" in caplog.text
    assert len(read_sample_set(tmp_path / "o.parquet")) == 4


@pytest.mark.parametrize("name", ["al3", "al4"])
def test_short_md_of_the_other_builtin_systems(name, tmp_path):
    """al3 (OBC1 CustomGBForce, 2 nm reaction-field cutoff, 310 K) and al4 run stably."""
    from boltzflow.systems import build_peptide, get_spec

    built = build_peptide(get_spec(name))
    s = MDSettings(equilibration_ps=0.5, length_ps=2.0, save_interval_ps=0.1,
                   checkpoint_interval_ps=1.0, platform="Reference")
    run_replica(built.system, built.positions, built.spec.temperature, s, 0, tmp_path / "f.parquet",
                tmp_path / "ck", target=name)
    frames = read_sample_set(tmp_path / "f.parquet", expected_dim=3 * built.n_atoms)
    assert len(frames) == 20 and np.isfinite(frames.energy).all()
    u = reduced_energies(built.system, built.spec.temperature,
                         frames.x.reshape(20, -1, 3).astype(np.float64))
    np.testing.assert_allclose(u, frames.energy, atol=0.05)


def test_unusable_checkpoint_restarts_cleanly(al2, tmp_path, caplog, monkeypatch):
    """A checkpoint from a platform missing here, or a corrupt state file, is not fatal."""
    s = MDSettings(equilibration_ps=0, length_ps=2, save_interval_ps=0.5, checkpoint_interval_ps=0.5,
                   platform="Reference")
    straight = run_replica(al2.system, al2.positions, 300.0, s, 0, tmp_path / "a.parquet",
                           tmp_path / "a.ckpt", target="al2")
    ckpt = tmp_path / "b.ckpt"

    class Stop(Exception):
        pass

    import boltzflow.md.openmm as md_module
    original = md_module._Checkpoint.save

    def save_then_stop(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(md_module._Checkpoint, "save", save_then_stop)
        with pytest.raises(Stop):
            run_replica(al2.system, al2.positions, 300.0, s, 0, tmp_path / "b.parquet", ckpt, target="al2")
    info = json.loads((ckpt / "progress.json").read_text())
    (ckpt / f"state.{info['generation']}.chk").write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger="boltzflow.md"):
        run_replica(al2.system, al2.positions, 300.0, s, 0, tmp_path / "b.parquet", ckpt, target="al2")
    assert "cannot be loaded" in caplog.text
    np.testing.assert_array_equal(read_sample_set(tmp_path / "b.parquet").x,
                                  read_sample_set(tmp_path / "a.parquet").x)
    assert straight["frames"] == 4
