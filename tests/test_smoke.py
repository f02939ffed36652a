"""The smoke config run end to end, once, and what a user does with a finished run: its outputs,
the report, a rerun, a changed coupling, damaged artifacts (the benchmark targets:
test_smoke_benchmarks.py).

The tests run in file order and the later ones change the run (they delete a model, damage a pairs
file and a sample set), so a test that only reads the run comes before them.
"""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from boltzflow.evaluation import evenly_spaced
from boltzflow.flows import load_flow
from boltzflow.io import read_sample_set, read_table
from boltzflow.md import split_frames
from workflow_helpers import snakemake, workflow_copy

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """The smoke config run end to end, once for the module."""
    repo = workflow_copy(tmp_path_factory.mktemp("smoke"))
    proc = snakemake(repo, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return repo


def test_smoke_outputs(smoke_run):
    repo = smoke_run
    out = repo / "results/smoke"
    frames = read_sample_set(out / "md/al2/frames.parquet", expected_dim=66, expected_target="al2")
    config = yaml.safe_load((repo / "config/smoke.yaml").read_text())["md"]
    n_per_replica = round(config["length_ps"] / config["save_interval_ps"])
    assert len(frames) == config["replicas"] * n_per_replica
    schema = pq.read_schema(out / "md/al2/frames.parquet")
    assert str(schema.field("x").type) == "fixed_size_list<element: float>[66]"
    assert str(schema.field("energy").type) == "double"
    assert frames.metadata["units"] == "nm" and frames.metadata["rule"] == "md_gather"
    # jobs run the library of the workflow they belong to, not some other installed copy
    assert frames.metadata["library_path"] == str((repo / "workflow/boltzflow").resolve())
    assert len(frames.metadata["parts"]) == config["torch"]["jobs"]
    assert all(part["engine"] == "torch" and len(part["swap_acceptance"]) == 1 for part in frames.metadata["parts"])
    # physical sanity: finite reduced energies of a thermalised peptide, nm-scale bonds
    assert np.isfinite(frames.energy).all()
    assert 1.0 < frames.energy.std() < 20.0
    xyz = frames.x.reshape(len(frames), 22, 3)
    ca_cb = np.linalg.norm(xyz[:, 8] - xyz[:, 10], axis=-1)  # ALA CA-CB
    assert 0.14 < ca_cb.mean() < 0.165
    assert sorted(frames.columns["replica"].unique()) == list(range(config["replicas"]))
    assert frames.columns["time_ps"].max() == pytest.approx(config["length_ps"])

    dihedrals, meta = read_table(out / "md/al2/dihedrals.parquet", required=("frame", "phi_ALA2", "psi_ALA2"))
    assert len(dihedrals) == len(frames) and meta["units"] == "radian"
    assert dihedrals[["phi_ALA2", "psi_ALA2"]].abs().max().max() <= np.pi
    assert (dihedrals.phi_ALA2 < 0).mean() > 0.5  # al2 at 300 K lives mostly at phi < 0

    split, _ = read_table(out / "md/al2/split.parquet", required=("frame", "split"))
    counts = split.split.value_counts()
    assert counts["train"] == int(0.8 * n_per_replica) * config["replicas"]
    assert counts.sum() == len(frames)

    populations, meta = read_table(out / "md/al2/convergence.parquet",
                                   required=("residue", "state", "population", "ci_low", "ci_high"))
    phi_negative = populations[populations.state.isin(["alpha_R", "beta"])].population.sum()
    assert phi_negative == pytest.approx((dihedrals.phi_ALA2 <= 0).mean(), abs=1e-9)
    assert (populations.ci_low <= populations.population + 1e-12).all()
    assert meta["convergence"]["n_frames"] == len(frames)
    assert "| " in (out / "md/al2/convergence.md").read_text()

    for name in ("md_ramachandran", "md_energy", "md_populations"):
        assert (out / f"figures/al2/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"figures/al2/{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "systems/al2/topology.pdb").exists() and (out / "systems/al2/system.xml").exists()
    log = (out / "logs/md_torch/al2-0.log").read_text()
    assert "ns/day" in log and "100%" in log

    reference = read_sample_set(out / "reference/dw4.parquet", expected_dim=8, expected_target="dw4")
    assert len(reference) == 320
    com = reference.x.reshape(-1, 4, 2).mean(axis=1)
    assert np.abs(com).max() < 1e-5  # samples live on the centre-of-mass-free subspace
    assert (reference.energy > -27).all() and (reference.energy < 5).all()
    diagnostics = reference.metadata["diagnostics"]
    assert {"converged", "swap_acceptance", "rhat", "acceptance"} <= set(diagnostics)


def test_report(smoke_run):
    repo = smoke_run
    proc = snakemake(repo, "--configfile", "config/smoke.yaml", "--report", "report.zip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (repo / "report.zip").stat().st_size > 10_000


def test_rerun_does_nothing_when_complete(smoke_run):
    repo = smoke_run
    proc = snakemake(repo, "-n", "--cores", "2", "--configfile", "config/smoke.yaml")
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr


def test_smoke_flows(smoke_run):
    """Every method x architecture of the smoke config is trained, with its history and a
    passing invertibility report, and the checkpoint rebuilds the model (weights only)."""
    import json

    import torch
    from boltzflow.flows import load_flow
    from boltzflow.io import read_pairs

    repo = smoke_run
    out = repo / "results/smoke"
    x0, x1, meta = read_pairs(out / "couplings/al2/ot.parquet", expected_dim=60)  # internal frame: 3 N - 6
    assert meta["kind"] == "ot" and meta["frame"]["n_atoms"] == 22 and meta["stats"]["solve_seconds_total"] >= 0
    assert meta["frame"]["kind"] == "internal" and meta["frame"]["reference_atoms"] == [8, 6, 14]  # CA, N, C
    train_frames = (read_table(out / "md/al2/split.parquet")[0].split == "train").sum()
    assert len(x0) == train_frames
    for method in ("regflow", "mle"):
        for arch in ("affine", "spline"):
            folder = out / f"models/al2/{method}-{arch}-seed0"
            flow, extra = load_flow(folder / "model.pt")
            summary = json.loads(extra["summary"])
            assert summary["method"] == method and summary["steps"] == 20
            report = json.loads((folder / "invertibility.json").read_text())
            assert report["max_error_float64"] < 1e-10 and not report["flagged"]
            history, hmeta = read_table(folder / "history.parquet", required=("step", "loss", "lr", "wall_s", "val_loss"))
            assert list(history.step) == [5, 10, 15, 20] and hmeta["method"] == method
            assert np.isfinite(history.val_loss).all() and hmeta["validation"]["frames"] == 2000
            x, log_q = flow.sample(64, generator=torch.Generator().manual_seed(0))
            # a proposal beyond a torsion cut of the internal frame has neither point nor density
            valid = torch.isfinite(log_q)
            assert x.shape == (64, 66) and torch.equal(valid, torch.isfinite(x).all(dim=1)) and valid.sum() >= 32
            assert not (folder / "checkpoint").exists()  # training state is removed once the model is saved


def test_smoke_ablation(smoke_run):
    """The ablation variants reuse the flow rules with one setting changed: the regulariser weight
    reaches the objective, the number of pairs the data, a teacher's training steps its own reflow
    pairs (even though the main flows learn OT pairs here); the main RegFlow flow is the reference
    row, and the table and figure are written."""
    repo = smoke_run
    out = repo / "results/smoke"
    table, _ = read_table(out / "tables/al2_ablation.parquet", required=("kind", "value", "e_w1", "t_w2"))
    ablations = table[table.kind != "main"]
    assert sorted(zip(ablations.kind, ablations.value)) == [("lambda_reg", 1e-4), ("n_pairs", 16), ("teacher_steps", 5)]
    folder = out / "ablation/al2"
    lam4 = read_table(folder / "regflow-spline-lam0.0001-seed0/history.parquet")[1]
    pairs16 = read_table(folder / "regflow-spline-pairs16-seed0/history.parquet")[1]
    taught = read_table(folder / "regflow-spline-teacher5-seed0/history.parquet")[1]
    main = read_table(out / "models/al2/regflow-spline-seed0/history.parquet")[1]
    assert lam4["regflow"]["lambda_reg"] == 1e-4 != main["regflow"]["lambda_reg"]
    assert pairs16["n_pairs"] == 16 and main["n_pairs"] > 16 and pairs16["regflow"]["n_pairs"] == 16
    # the teacher variant: a 5-step teacher (the main one trains 10), its 48 pairs in two shards
    teacher_history = read_table(folder / "cnf-steps5-seed0/history.parquet", required=("step",))[0]
    assert teacher_history.step.max() == 5 and main["teacher"] is None
    assert taught["n_pairs"] == 48 and taught["teacher"]["train_steps"] == 5
    assert taught["teacher"]["model"].endswith("ablation/al2/cnf-steps5-seed0/model.pt")
    pairs_meta = read_table(folder / "couplings/cnf-steps5.parquet")[1]
    assert pairs_meta["n_pairs"] == 48 and not (folder / "couplings/cnf-steps5-shards").exists()
    assert len(list((out / "logs/ablation_pairs").glob("al2-steps5-shard*.log"))) == 2
    main_rows = table[table.kind == "main"]
    assert list(main_rows.model) == ["regflow-spline-seed0"] and main_rows.iloc[0].main_n_pairs == main["n_pairs"]
    assert main_rows.iloc[0].e_w1 == read_table(out / "metrics/al2/regflow-spline-seed0.parquet")[0].iloc[0].e_w1
    assert (out / "figures/al2/ablation.png").stat().st_size > 10_000


def test_cnf_coupling_end_to_end(smoke_run):
    """flows.coupling: cnf trains the CNF teacher, makes reflow pairs and trains RegFlow on them."""
    repo = smoke_run
    (repo / "config/cnf.yaml").write_text("flows: {coupling: cnf, methods: [regflow], architectures: [spline]}\n")
    target = "results/smoke/models/al2/regflow-spline-seed0/model.pt"
    (repo / target).unlink()
    teacher_metrics = "results/smoke/metrics/al2/cnf-seed0.parquet"  # the CNF as a baseline generator
    proc = snakemake(repo, target, teacher_metrics, "--cores", "2", "--configfile", "config/smoke.yaml",
                     "config/cnf.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = read_table(repo / teacher_metrics)[0].iloc[0]
    assert row.method == "cnf" and row.n_drawn == 32 and 0 < row.ess <= 1 and not row.invertibility_flagged
    cnf_samples = read_sample_set(repo / "results/smoke/samples/al2/cnf-seed0.parquet", expected_dim=66)
    assert np.isfinite(cnf_samples.columns["log_q"]).all() and cnf_samples.metadata["stats"]["nfe"] > 0
    assert np.isfinite(row.test_log_q) and row.test_log_q_finite > 0  # 8 test frames, integrated backwards
    assert cnf_samples.metadata["heldout"]["n_test_frames"] == 8
    from boltzflow.io import file_digest, read_pairs, write_pairs

    x0, x1, meta = read_pairs(repo / "results/smoke/couplings/al2/cnf.parquet", expected_dim=60)
    assert meta["kind"] == "cnf" and len(x0) == 64
    # made in two shards (40 + 24) with their own prior draws, merged; the shards are temporary
    assert meta["stats"]["shards"] == 2 and len(np.unique(x0[:, 0])) == 64
    assert not list((repo / "results/smoke/couplings/al2/cnf-shards").glob("*.parquet"))
    assert (repo / "results/smoke/models/al2/cnf-seed0/history.parquet").exists()
    assert (repo / target).exists()
    # the pairs and the student record which teacher made them (10 training steps in the smoke config)
    teacher = repo / "results/smoke/models/al2/cnf-seed0/model.pt"
    assert meta["teacher"]["digest"] == file_digest(teacher) and meta["teacher"]["train_steps"] == 10
    student = read_table(repo / target.replace("model.pt", "history.parquet"))[1]
    assert student["teacher"] == meta["teacher"]

    # a quality floor the teacher misses stops its pairs (and so its students), naming the number
    pairs = repo / "results/smoke/couplings/al2/cnf.parquet"
    pairs.unlink()
    (repo / "config/floor.yaml").write_text("couplings: {cnf: {quality_floor: {max_e_w1: 1.0e-6, min_ess: 0.0}}}\n")
    proc = snakemake(repo, str(pairs.relative_to(repo)), "--cores", "2", "--configfile", "config/smoke.yaml",
                     "config/cnf.yaml", "config/floor.yaml")
    assert proc.returncode != 0 and not pairs.exists()
    log = (repo / "results/smoke/logs/cnf_pairs/al2-shard0.log").read_text()
    assert f"{teacher_metrics}: the teacher fails its quality floor: e_w1 " in log
    assert "> couplings.cnf.quality_floor.max_e_w1 = 1e-06" in log and "min_ess" not in log.split("fails")[1]
    (repo / "config/floor.yaml").write_text("couplings: {cnf: {quality_floor: {max_e_w1: 1000000.0}}}\n")
    proc = snakemake(repo, str(pairs.relative_to(repo)), "--cores", "2", "--configfile", "config/smoke.yaml",
                     "config/cnf.yaml", "config/floor.yaml")
    assert proc.returncode == 0 and pairs.exists(), proc.stderr[-3000:]
    assert "teacher quality floor passed: e_w1" in (repo / "results/smoke/logs/cnf_pairs/al2-shard1.log").read_text()

    # pairs from another teacher of the same frame are refused by the student, naming both files
    x0, x1, meta = read_pairs(pairs)
    write_pairs(pairs, x0, x1, {**meta, "teacher": {**meta["teacher"], "digest": "0" * 16}})
    (repo / target).unlink()
    proc = snakemake(repo, target, "--cores", "1", "--configfile", "config/smoke.yaml", "config/cnf.yaml",
                     "--rerun-triggers", "mtime")
    assert proc.returncode != 0 and not (repo / target).exists()
    log = (repo / "results/smoke/logs/train_flow/al2-regflow-spline-seed0.log").read_text()
    assert "cnf.parquet: made by teacher" in log and "digest 0000000000000000" in log and "cnf-seed0/model.pt" in log


def test_pairs_from_another_frame_are_refused(smoke_run):
    """RegFlow training refuses pairs made in another latent frame and names the file."""
    from boltzflow.io import read_pairs, write_pairs

    repo = smoke_run
    pairs = repo / "results/smoke/couplings/al2/ot.parquet"
    x0, x1, meta = read_pairs(pairs)
    meta["frame"]["hash"] = "0" * 16  # as if the frame had been fitted to other data
    write_pairs(pairs, x0, x1, meta)
    target = "results/smoke/models/al2/regflow-affine-seed0/model.pt"
    (repo / target).unlink()
    proc = snakemake(repo, target, "--cores", "1", "--configfile", "config/smoke.yaml")
    assert proc.returncode != 0
    log = (repo / "results/smoke/logs/train_flow/al2-regflow-affine-seed0.log").read_text()
    assert "ot.parquet: made in frame" in log


def test_smoke_evaluation(smoke_run):
    """Every flow is sampled with its exact log q and scored; the table and Fig. 2 exist."""
    repo = smoke_run
    out = repo / "results/smoke"
    models = [f"{m}-{a}-seed0" for m in ("regflow", "mle") for a in ("affine", "spline")]
    for model in models:
        samples = read_sample_set(out / f"samples/al2/{model}.parquet", expected_dim=66, expected_target="al2")
        assert len(samples) + samples.metadata["stats"]["n_invalid"] == 300
        log_w = samples.columns["log_w"].to_numpy()
        assert np.allclose(log_w, -samples.energy - samples.columns["log_q"].to_numpy())
        row = read_table(out / f"metrics/al2/{model}.parquet")[0].iloc[0]
        assert row.model == model and 0 < row.ess <= 1 and np.isfinite(row.e_w1) and np.isfinite(row.t_w2)
        assert row.n_drawn == 300 and not row.invertibility_flagged and row.train_s > 0
        assert np.isfinite(row.test_log_q) and 0 < row.test_log_q_finite <= 1 and row.test_log_q_se > 0
        if model.startswith("regflow"):
            continue  # the RegFlow models may have been retrained by the CNF-coupling test by now
        # the held-out log-likelihood: the flow's own log q of 50 evenly spaced MD test frames
        flow, _ = load_flow(out / f"models/al2/{model}/model.pt")
        test_x = split_frames(out / "md/al2/frames.parquet", out / "md/al2/split.parquet", "test")
        with torch.no_grad():
            log_q = flow.log_prob(torch.as_tensor(test_x[evenly_spaced(len(test_x), 50)], dtype=torch.float64))
        finite = torch.isfinite(log_q)
        assert row.test_log_q == pytest.approx(log_q[finite].mean().item(), rel=1e-9)
        assert row.test_log_q_finite == finite.double().mean().item() > 0 and row.test_log_q_se > 0
    table, _ = read_table(out / "tables/al2_flows.parquet")
    assert len(table) == 4 and set(table.method) == {"regflow", "mle"} and (table.seeds == 1).all()
    assert np.isfinite(table.test_log_q_mean).all() and ((table.invalid_rate_mean >= 0) & (table.invalid_rate_mean < 1)).all()
    text = (out / "tables/al2_flows.md").read_text()
    assert "| architecture | method | seeds | ESS | E-W1 | E-W2 | T-W2 | E-W1 raw | test log q | invalid |" in text
    assert (out / "figures/al2/flow_samples.png").stat().st_size > 10_000
    summary, _ = read_table(out / "tables/summary_flows.parquet")
    assert set(summary.system) == {"al2"} and len(summary) == 4
    fep = read_table(out / "fep/al2/tfep.parquet")[0]
    assert list(fep.estimator) == ["MD populations", "TFEP (RegFlow map)"] and np.isfinite(fep.dF.iloc[0])
    assert "| MD populations |" in (out / "tables/al2_fep.md").read_text()
    assert (out / "figures/al2/fep.png").stat().st_size > 10_000


def test_scoring_counts_nan_log_weights_and_refuses_a_wrong_dimension(smoke_run):
    """A sample set with NaN log-weights is scored without them (counted); one of the wrong
    dimension fails naming the file."""
    import pyarrow as pa

    repo = smoke_run
    path = repo / "results/smoke/samples/al2/mle-affine-seed0.parquet"
    table = pq.read_table(path)
    log_q = table.column("log_q").to_numpy().copy()
    log_q[:7] = np.nan
    table = table.set_column(table.schema.get_field_index("log_q"), "log_q", pa.array(log_q))
    pq.write_table(table, path)
    metrics = "results/smoke/metrics/al2/mle-affine-seed0.parquet"
    proc = snakemake(repo, metrics, "--cores", "1", "--configfile", "config/smoke.yaml", "--forcerun", "score_samples")
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = read_table(repo / metrics)[0].iloc[0]
    assert row.n_invalid >= 7 and row.n_valid == 300 - row.n_invalid

    samples = read_sample_set(path)
    from boltzflow.io import write_sample_set

    write_sample_set(path, samples.x[:, :60], samples.energy, target="al2", units="nm",
                     log_q=samples.columns["log_q"].to_numpy(), metadata=samples.metadata)
    proc = snakemake(repo, metrics, "--cores", "1", "--configfile", "config/smoke.yaml", "--forcerun", "score_samples")
    assert proc.returncode != 0
    log = (repo / "results/smoke/logs/score_samples/al2-mle-affine-seed0.log").read_text()
    assert "mle-affine-seed0.parquet" in log and "60" in log and "66" in log


def test_smoke_ebm(smoke_run):
    """flowMC-EBM and ULA-EBM on a 2-D mixture and a 16-D GMM: models, metrics, tables, figures."""
    repo = smoke_run
    out = repo / "results/smoke"
    from boltzflow.ebm import load_ebm_model

    for dataset, dim in (("mixture2d_weights", 2), ("gmm4_d16", 16)):
        for method in ("flowmc", "ula"):
            run = out / f"ebm/{dataset}/{method}-seed0"
            ebm, flow, saved = load_ebm_model(run / "model.pt")
            assert ebm.dim == dim and "local_state" in saved
            history, meta = read_table(run / "history.parquet", required=("iteration", "loss_ebm", "ebm_w0"))
            assert meta["method"] == method and history["iteration"].iloc[-1] == 16  # 2 epochs of 512 / 64
            chains, _ = read_table(run / "chains.parquet")
            assert chains.shape == (128, dim)
            metrics, _ = read_table(run / "metrics.parquet", required=("rhat_max", "mse_ebm", "mse_init"))
            assert np.isfinite(metrics["rhat_max"].iloc[0]) and 0 <= metrics["mse_ebm"].iloc[0] < 1
            density, _ = read_table(run / "density.parquet")
            assert len(density) == (40 * 40 if dim == 2 else 0)
            assert not (run / "checkpoint").exists()
    table, _ = read_table(out / "tables/ebm_summary.parquet")
    assert len(table) == 4
    assert "| flowMC-EBM |" in (out / "tables/ebm_rhat.md").read_text()
    assert "| mixture2d_weights | ULA-EBM |" in (out / "tables/ebm_mode_weights.md").read_text()
    for name in ("mode_weights", "densities"):
        assert (out / f"figures/ebm_{name}.png").stat().st_size > 10_000


def test_smoke_shootout(smoke_run):
    """The comparison on gmm40 and al2: one row per (method, budget, seed) within the budget, the
    exact-samples floor (MD training frames for al2), the table with intervals over the two seeds,
    the figure."""
    out = smoke_run / "results/smoke"
    for method in ("pt", "flow_mle", "flowmc", "tb_ls"):
        for seed in (0, 1):
            row = read_table(out / f"shootout/gmm40/{method}-b4000-seed{seed}.parquet",
                             required=("energy_calls", "w2", "energy_w1", "mode_tv"))[0].iloc[0]
            assert 2000 <= row["energy_calls"] <= 4000 and row["w2"] > 0 and 0 <= row["mode_tv"] <= 1
    floor = read_table(out / "shootout/gmm40/exact-seed0.parquet")[0].iloc[0]
    assert floor["energy_calls"] == 0 and np.isnan(floor["log_z_error"])
    table = read_table(out / "tables/shootout.parquet")[0]
    assert set(table.method) == {"exact", "pt", "flow_mle", "flow_regflow", "flowmc", "tb_ls"} and (table.seeds == 2).all()
    flow = table[(table.method == "flow_mle") & (table.target == "gmm40")].iloc[0]
    assert flow.log_z_error_mean >= 0 and flow.ess_low <= flow.ess_mean <= flow.ess_high
    assert "| parallel tempering (MALA) | 4,000 | 2 |" in (out / "tables/shootout.md").read_text()
    assert (out / "figures/shootout.png").stat().st_size > 10_000 and (out / "figures/shootout.pdf").exists()
    # al2, against the smoke MD's test frames: tempering MD and the two flows trained on its states
    for method in ("pt", "flow_mle", "flow_regflow"):
        for seed in (0, 1):
            row = read_table(out / f"shootout/al2/{method}-b20000-seed{seed}.parquet",
                             required=("energy_calls", "energy_w1", "t_w2", "mode_tv"))[0].iloc[0]
            assert 18_000 <= row["energy_calls"] <= 20_000 and row["t_w2"] > 0 and 0 <= row["mode_tv"] <= 1
            assert "w2" not in row and np.isnan(row["ess"]) == (method == "pt")
    md_floor = read_table(out / "shootout/al2/exact-seed0.parquet", required=("t_w2",))[0].iloc[0]
    assert md_floor["energy_calls"] == 0 and md_floor["t_w2"] > 0
    assert "| parallel-tempering MD (torch engine) | 20,000 | 2 |" in (out / "tables/shootout.md").read_text()


def test_smoke_sgds(smoke_run):
    """SGDS on gmm40, dw4 (EGNN, PT reference samples) and al2 (md Searcher, MD frames): samplers,
    histories with the gap, metrics, the table, figures."""
    repo = smoke_run
    out = repo / "results/smoke"
    from boltzflow.sgds import load_sampler

    run = out / "sgds/gmm40/sgds-seed0"
    sampler, saved = load_sampler(run / "model.pt")
    assert sampler.dim == 2 and sampler.n_steps == 10
    history, meta = read_table(run / "history.parquet", required=("iteration", "loss", "energy_calls", "gap"))
    assert meta["method"] == "sgds" and history["iteration"].iloc[-1] == 60
    metrics, _ = read_table(run / "metrics.parquet", required=("elbo", "eubo", "gap", "w2", "energy_calls"))
    row = metrics.iloc[0]
    assert row["elbo"] < 0.0 < row["eubo"]  # gmm40: log Z = 0
    # searcher chains x (steps + 1) a round, learner batches on the on-policy (even) iterations
    assert int(row["energy_calls"]) == saved["energy_calls"] == 2 * 20 * 61 + 32 * 30
    assert not (run / "checkpoint").exists()
    assert "| gmm40 | SGDS |" in (out / "tables/sgds.md").read_text()
    for name in ("gap", "samples", "particles"):
        assert (out / f"figures/sgds_{name}.png").stat().st_size > 10_000
    # dw4: an EGNN Learner on the centre-of-mass-free subspace, reference samples from the PT rule
    sampler, _ = load_sampler(out / "sgds/dw4/sgds-seed0/model.pt")
    assert sampler.particles == (4, 2) and type(sampler.drift).__name__ == "EGNNDrift"
    row = read_table(out / "sgds/dw4/sgds-seed0/metrics.parquet", required=("gap", "w2", "distance_w1"))[0].iloc[0]
    assert row["eubo"] > row["elbo"] and row["distance_w1"] > 0 and np.isnan(row["log_z_true"])
    x = read_table(out / "sgds/dw4/sgds-seed0/samples.parquet")[0].to_numpy().reshape(-1, 4, 2)
    assert np.abs(x.mean(1)).max() < 1e-5  # zero centre of mass
    assert "| dw4 | SGDS | 8 |" in (out / "tables/sgds.md").read_text()
    # al2: the md Searcher (2 chains x 61 force evaluations a round), an EGNN with one label per atom
    sampler, saved = load_sampler(out / "sgds/al2/sgds-seed0/model.pt")
    assert sampler.particles == (22, 3) and sampler.drift.node_types == tuple(range(22))
    assert saved["searcher_calls"] == 2 * 2 * 61 and saved["learner_calls"] == 32 * 4
    assert "## Peptides" in (out / "tables/sgds.md").read_text()


