"""The benchmark targets on the smoke config's data. They need only the MD data path, not the
whole smoke run, so this file runs beside test_smoke.py on another worker."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from workflow_helpers import snakemake, workflow_copy

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """The smoke config's MD data, split and flow frame (the benchmarks' inputs), once for the module."""
    repo = workflow_copy(tmp_path_factory.mktemp("smoke_bench"))
    proc = snakemake(repo, "results/smoke/md/al2/split.parquet", "results/smoke/models/al2/frame.json",
                     "--cores", "2", "--configfile", "config/smoke.yaml")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return repo


def run_benchmark(repo, name):
    """Run the target ``bench_<name>`` on the smoke config; its table as a DataFrame."""
    proc = snakemake(repo, f"bench_{name}", "--cores", "2", "--configfile", "config/smoke.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return pq.read_table(repo / f"results/benchmarks/{name}.parquet").to_pandas()


def test_bench_md_target(smoke_data):
    repo = smoke_data
    table = run_benchmark(repo, "md")
    plain = table[table.engine == "plain OpenMM context"]
    assert {"Reference", "CPU"} <= set(plain.platform)
    stage = table[table.engine.str.startswith("boltzflow MD stage")]
    assert set(stage.replicas) == {1, 2} and (stage.ns_per_day > 0).all()
    assert np.isfinite(stage.ratio_vs_best_plain).all()
    assert plain.ratio_vs_best_plain.max() == pytest.approx(1.0)
    assert (table[table.unit == "rows/s"].rows_per_s > 0).all()
    torch_rows = table[table.engine.str.startswith("torch engine")]
    assert set(torch_rows.replicas) == {1, 4} and (torch_rows.ns_per_day > 0).all()
    assert np.isfinite(torch_rows.ratio_vs_openmm_all_cores).all()
    race = table[table.unit == "s"]
    assert len(race) == 2 and (race.frames > 0).all() and (race.wall_s > 0).all()
    assert ((race.phi_positive >= 0) & (race.phi_positive <= 1)).all()
    openmm = race[race.engine.str.startswith("OpenMM")].iloc[0]
    assert openmm.probe_replicas == 1 and openmm.probe_length_ps == 2  # the smoke config's probe
    assert "2 temperatures: 300, 400 K" in race.engine.iloc[1]  # the race ladder, not md's
    text = (repo / "results/benchmarks/md.md").read_text()
    assert "Plain-dynamics probe: 1 replica x 2 ps" in text
    assert "| engine |" in text and "ratio_vs_best_plain" in text and "precise phi > 0" in text


def test_bench_energy_target(smoke_data):
    repo = smoke_data
    table = run_benchmark(repo, "energy")
    assert set(table.engine) == {"torch", "OpenMM Reference, 1 context", "OpenMM CPU, 1 context",
                                 "OpenMM Reference pool, 2 contexts"}
    torch_rows = table[table.engine == "torch"]
    assert set(torch_rows.dtype) == {"float32", "float64"} and set(torch_rows.batch) == {1, 40}
    assert set(table.quantity) == {"energy", "energy+forces"}
    assert (table.configs_per_s > 0).all() and np.isfinite(table.ratio_vs_openmm_reference).all()
    reference = table[table.engine == "OpenMM Reference, 1 context"]
    assert np.allclose(reference.ratio_vs_openmm_reference, 1.0)
    assert "## al2: energy+forces" in (repo / "results/benchmarks/energy.md").read_text()


def test_bench_frames_target(smoke_data):
    """The frame comparison runs on the smoke MD data: one row per frame kind, an ESS in (0, 1],
    the body frame as the ratio's baseline, and the internal frame's lost proposals counted: with
    standardised torsions (the default) many cross a cut, with the marginal map far fewer."""
    repo = smoke_data
    table = run_benchmark(repo, "frames")
    assert list(table.kind) == ["body", "internal", "internal-marginal"] and set(table.dim) == {60}
    assert ((table.ess > 0) & (table.ess <= 1)).all()
    assert table.ess_ratio.iloc[0] == 1.0 and np.isfinite(table.reference_median_energy).all()
    assert ((table.invalid_fraction >= 0) & (table.invalid_fraction < 1)).all()
    assert table.invalid_fraction.iloc[0] == 0.0          # the body frame's chart is all of R^60
    lost = table.set_index("kind").invalid_fraction
    assert lost["internal-marginal"] < 0.5 * lost["internal"], lost
    text = (repo / "results/benchmarks/frames.md").read_text()
    assert "| kind |" in text and "reproduce: snakemake --cores all bench_frames" in text


def test_bench_ot_floor_target(smoke_data):
    """The OT-floor benchmark runs in the flows' frame of the smoke run: one row per batch size,
    floors between 0 and (with noise) the independent-pairing floor."""
    repo = smoke_data
    table = run_benchmark(repo, "ot_floor")
    assert list(table.batch_size) == [32, 128] and (table.queries == 8).all()
    assert ((table.floor_per_dim > 0) & (table.ratio_vs_independent < 1.5)).all()
    assert "| batch_size |" in (repo / "results/benchmarks/ot_floor.md").read_text()


def test_bench_flows_target(smoke_data):
    repo = smoke_data
    table = run_benchmark(repo, "flows")
    sampling = table[table.section == "sampling"]
    assert (sampling.samples_per_s > 0).all() and np.isfinite(sampling.samples_per_s).all()
    assert {"training"} <= set(table.section)
    text = (repo / "results/benchmarks/flows.md").read_text()
    assert "Sampling with exact log-density" in text and "RegFlow vs MLE" in text


def test_bench_reflow_target(smoke_data):
    """The reflow-solver benchmark trains the smoke CNF teacher and compares the solvers with the
    tight reference: one row per solver and the reference last, errors ordered as the solvers'
    orders, the teacher recorded."""
    from boltzflow.io import file_digest, read_table

    repo = smoke_data
    table = run_benchmark(repo, "reflow")
    _, meta = read_table(repo / "results/benchmarks/reflow.parquet",
                         required=("solver", "rms_error_per_dim", "pairs_per_s", "speedup_vs_reference"))
    assert list(table.solver) == ["dopri5 tol 0.001", "rk4 x 4", "euler x 4", "dopri5 tol 1e-08"]
    error = table.set_index("solver").rms_error_per_dim
    assert error["dopri5 tol 1e-08"] == 0.0 and error["euler x 4"] > error["rk4 x 4"] > 0
    assert (table.pairs_per_s > 0).all() and (table.dim == 60).all() and (table.n_pairs == 64).all()
    teacher = repo / "results/smoke/models/al2/cnf-seed0/model.pt"
    assert meta["teacher"]["digest"] == file_digest(teacher) and meta["teacher"]["train_steps"] == 10
    assert "| solver |" in (repo / "results/benchmarks/reflow.md").read_text()


def test_bench_teacher_target(smoke_data):
    """The teacher benchmark trains one CNF per pairing and step count and scores each as a
    Boltzmann generator: a row each, finite metrics, a figure."""
    repo = smoke_data
    table = run_benchmark(repo, "teacher")
    assert sorted(zip(table.pairing, table.steps)) == [("independent", 5), ("independent", 10),
                                                        ("minibatch_ot", 5), ("minibatch_ot", 10)]
    assert ((table.ess > 0) & (table.ess <= 1)).all() and np.isfinite(table[["e_w1", "t_w2", "rk4_10_rms"]]).all().all()
    assert (table.train_s > 0).all() and (table.sampling_s > 0).all()
    assert (repo / "results/benchmarks/teacher.png").stat().st_size > 10_000
    assert "| pairing | steps |" in (repo / "results/benchmarks/teacher.md").read_text()
