"""The workflow as a user starts it: dry runs of every config, lint, bad configs and bad input
files, the OpenMM engine, user data, the resources in the profiles (the smoke run is in
``test_smoke.py``)."""

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml
from boltzflow.config import validate_config
from boltzflow.ebm import check_ebm_section
from boltzflow.io import read_metadata, read_sample_set, read_table
from boltzflow.sgds import check_sgds_section
from workflow_helpers import ROOT, snakemake, workflow_copy

pytestmark = pytest.mark.workflow
CONFIGS = sorted(p.relative_to(ROOT) for p in (ROOT / "config").rglob("*.yaml"))


def layered(config: Path) -> list[Path]:
    """The config files a config is run with: config/gpu-check/X.yaml shortens config/paper/X.yaml
    (.ci/gpu-check layers it on that), every other config stands alone."""
    return [Path("config/paper") / config.name, config] if config.parts[1] == "gpu-check" else [config]


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory):
    """A dry run of each config, two runs at a time (one per core of the CI machine)."""
    def run(config):
        repo = workflow_copy(tmp_path_factory.mktemp("dry"))
        return repo, snakemake(repo, "-n", "--cores", "2", "--configfile", *map(str, layered(config)))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(CONFIGS, pool.map(run, CONFIGS)))


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_dry_run_of_every_config(dry_runs, config):
    repo, proc = dry_runs[config]
    assert proc.returncode == 0, proc.stderr[-3000:]
    settings = {}
    for part in layered(config):  # the top-level sections these checks read, as layered
        for key, value in yaml.safe_load((ROOT / part).read_text()).items():
            settings[key] = {**settings[key], **value} if isinstance(value, dict) and key in settings else value
    if settings.get("systems", ["al2"]):
        assert "md_torch" in proc.stdout or "md_replica" in proc.stdout
    else:  # an EBM-, SGDS- or comparison-only config: MD only for the reference frames of a peptide target
        peptides = {"al2", "al3", "al4"} & (set(settings.get("sgds", {}).get("targets", []))
                                            | set(settings.get("shootout", {}).get("targets", [])))
        assert any(rule in proc.stdout for rule in ("train_ebm", "train_sgds", "shootout_run"))
        assert ("md_torch" in proc.stdout) == bool(peptides)
    assert not (repo / "results").exists()


def test_openmm_engine_end_to_end(tmp_path):
    """md.engine: openmm runs one OpenMM job per replica and writes the same frames table."""
    repo = workflow_copy(tmp_path)
    (repo / "config/engine_openmm.yaml").write_text(
        "experiment: openmm\nmd: {engine: openmm, replicas: 2, length_ps: 5, equilibration_ps: 1, "
        "save_interval_ps: 0.5, checkpoint_interval_ps: 5, timestep_fs: 1.0}\n")
    target = "results/openmm/md/al2/convergence.parquet"
    proc = snakemake(repo, target, "--cores", "2", "--configfile", "config/smoke.yaml", "config/engine_openmm.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "md_replica" in proc.stdout + proc.stderr and "md_torch" not in proc.stdout + proc.stderr
    frames = read_sample_set(repo / "results/openmm/md/al2/frames.parquet", expected_dim=66)
    assert len(frames) == 2 * 10
    assert frames.metadata["parts"][0]["platform"] == "Reference"


def test_lint_is_clean():
    proc = snakemake(ROOT, "--lint", "--configfile", "config/smoke.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


BAD_CONFIGS = [
    ({"colour": "red"}, "'colour'"),
    ({"md": {"replicas": "four"}}, "'md.replicas'"),
    ({"md": {"length_ps": -10}}, "'md.length_ps'"),
    ({"systems": ["al2", "chignolin"]}, "'systems[1]'"),
    ({"md": {"timestep_fs": 1.0, "frictoin_per_ps": 1}}, "'md.frictoin_per_ps'"),
    ({"ebm": {"flowmc": {"n_lokal": 3}}}, "'ebm.flowmc.n_lokal'"),
    ({"ebm": {"datasets": ["rings"], "per_dataset": {"rings": {"train": {"epochz": 1}}}}},
     "ebm.per_dataset.rings.train: unknown key(s) epochz"),
    ({"ebm": {"datasets": ["rings"], "per_dataset": {"ringz": {}}}}, "ebm.per_dataset.ringz"),
    ({"sgds": {"settings": {"n_stepz": 3}}}, "'sgds.settings.n_stepz'"),
    ({"sgds": {"targets": ["funnel1O"]}}, "sgds.targets: 'funnel1O' is not a target with"),
    ({"sgds": {"targets": ["gmm40"], "settings": {"network": "egnn"}}}, "network egnn needs a particle or peptide"),
    ({"sgds": {"targets": ["gmm40"], "settings": {"searcher": "md"}}}, "searcher md needs a peptide target"),
    ({"sgds": {"settings": {"searcher": "hmc"}}}, "'sgds.settings.searcher'"),
    ({"sgds": {"per_target": {"lj55": {"time_grid": "cosine"}}}}, "'sgds.per_target.lj55.time_grid'"),
    ({"sgds": {"per_target": {"gmm4O": {"sigma": 2.0}}}}, "sgds.per_target.gmm4O: unknown target"),
    ({"sgds": {"targets": ["gmm40"], "settings": {"searcher_burn_in": 5000}}}, "searcher_burn_in < searcher_steps"),
]


# the cases that also go through snakemake end to end (a top-level key, and a check of each of the
# two stages that resolve their runs at parse time); every case is checked in-process below
THROUGH_SNAKEMAKE = ("'colour'", "ebm.per_dataset.ringz", "searcher md needs a peptide target")


def _layered(base, over):
    """``over`` layered onto ``base`` key by key, as snakemake layers a --configfile on the workflow's."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _layered(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.mark.parametrize("index", range(len(BAD_CONFIGS)), ids=[key for _, key in BAD_CONFIGS])
def test_malformed_config_is_refused_naming_the_key(index):
    """The checks the workflow runs at parse time (common.smk), on the default config with each bad
    piece layered on top."""
    config = _layered(yaml.safe_load((ROOT / "config/config.yaml").read_text()),
                      {"experiment": "bad", **BAD_CONFIGS[index][0]})
    with pytest.raises(ValueError) as err:
        validate_config(config, schema=ROOT / "workflow/schemas/config.schema.yaml")
        check_ebm_section(config["ebm"])
        check_sgds_section(config["sgds"])
    assert BAD_CONFIGS[index][1] in str(err.value)


@pytest.fixture(scope="module")
def malformed_runs(tmp_path_factory):
    """Snakemake on the bad configs of THROUGH_SNAKEMAKE, two runs at a time (one per core of the CI machine)."""
    def run(index):
        repo = workflow_copy(tmp_path_factory.mktemp(f"bad{index}"))
        (repo / "bad.yaml").write_text(yaml.safe_dump({"experiment": "bad", **BAD_CONFIGS[index][0]}))
        return index, (repo, snakemake(repo, "--cores", "1", "--configfile", "bad.yaml"))

    chosen = [i for i, (_, key) in enumerate(BAD_CONFIGS) if key in THROUGH_SNAKEMAKE]
    assert len(chosen) == len(THROUGH_SNAKEMAKE)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, chosen))


@pytest.mark.parametrize("key", THROUGH_SNAKEMAKE)
def test_malformed_config_fails_before_any_job(malformed_runs, key):
    index = next(i for i, (_, k) in enumerate(BAD_CONFIGS) if k == key)
    repo, proc = malformed_runs[index]
    assert proc.returncode != 0
    assert key in proc.stderr + proc.stdout
    assert not (repo / "results").exists()  # nothing ran


def _user_data_config(repo, frames, units):
    config = {"experiment": "byod", "md": {"source": "file", "files": {"al2": {
        "frames": str(frames), "topology": str(repo / "user.pdb"), "units": units, "time_step_ps": 2.0}}}}
    (repo / "byod.yaml").write_text(yaml.safe_dump(config))


def test_bring_your_own_frames(tmp_path, al2):
    import openmm.app as app
    repo = workflow_copy(tmp_path)
    with open(repo / "user.pdb", "w") as handle:
        app.PDBFile.writeFile(al2.topology, al2.positions * 10.0, handle)
    xyz = al2.positions[None] + np.random.default_rng(1).normal(scale=0.002, size=(40, 22, 3))
    np.save(repo / "frames_A.npy", xyz * 10.0)
    _user_data_config(repo, repo / "frames_A.npy", "angstrom")
    (repo / "noflows.yaml").write_text("flows: {systems: []}\nebm: {datasets: []}\nsgds: {targets: []}\nshootout: {targets: []}\n")  # the data path only
    proc = snakemake(repo, "--cores", "2", "--configfile", "byod.yaml", "noflows.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = read_sample_set(repo / "results/byod/md/al2/frames.parquet", expected_dim=66)
    np.testing.assert_allclose(frames.x, xyz.reshape(40, -1), atol=1e-6)
    assert np.isfinite(frames.energy).all()
    np.testing.assert_allclose(frames.columns["time_ps"], np.arange(1, 41) * 2.0)
    assert read_metadata(repo / "results/byod/md/al2/frames.parquet")["rule"] == "md_import"


def test_bad_frames_file_fails_naming_the_file(tmp_path, al2):
    import openmm.app as app
    repo = workflow_copy(tmp_path)
    with open(repo / "user.pdb", "w") as handle:
        app.PDBFile.writeFile(al2.topology, al2.positions * 10.0, handle)
    np.save(repo / "frames_in_A.npy", np.repeat(al2.positions[None] * 10.0, 5, axis=0))
    _user_data_config(repo, repo / "frames_in_A.npy", "nm")  # wrong: the file is in angstrom
    proc = snakemake(repo, "results/byod/md/al2/frames.parquet", "--cores", "1", "--configfile", "byod.yaml")
    assert proc.returncode != 0
    log = (repo / "results/byod/logs/md_import/al2.log").read_text()
    assert "frames_in_A.npy: median bond length" in log and "angstrom" in log
    assert not (repo / "results/byod/md/al2/frames.parquet").exists()


def test_ebm_on_user_data(tmp_path):
    repo = workflow_copy(tmp_path)
    points = np.random.default_rng(0).normal(size=(300, 2)) * [1.0, 0.3]
    np.save(repo / "mine.npy", points)
    config = {"experiment": "mine", "ebm": {
        "datasets": ["mine"], "methods": ["flowmc"], "user_data": {"mine": str(repo / "mine.npy")},
        "train": {"epochs": 1, "batch_size": 50, "n_persistent": 64, "history_every": 2},
        "flowmc": {"n_cycles": 1, "n_local": 2, "n_particles": 4},
        "evaluation": {"grid_points": 20, "history_grid_points": 10, "n_eval": 16, "rhat_chains": 8, "rhat_cycles": 2}}}
    (repo / "mine.yaml").write_text(yaml.safe_dump(config))
    target = "results/mine/ebm/mine/flowmc-seed0/metrics.parquet"
    proc = snakemake(repo, target, "--cores", "1", "--configfile", "mine.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics, _ = read_table(repo / target)
    assert "mse_ebm" not in metrics and np.isfinite(metrics["rhat_max"].iloc[0])
    history, _ = read_table(repo / "results/mine/ebm/mine/flowmc-seed0/history.parquet")
    assert history["iteration"].iloc[-1] == 6  # one epoch of the array's 300 rows in batches of 50
    (repo / "mine.npy").write_bytes(b"junk")
    proc = snakemake(repo, target, "--forceall", "--cores", "1", "--configfile", "mine.yaml")
    assert proc.returncode != 0 and "mine.npy: cannot read user data" in proc.stderr + proc.stdout


# The memory (MB) and wall time (minutes) the rules asked for before they moved to the profiles
# (cnf_pairs_shard: what cnf_pairs asked for before the reflow pairs were made in shards).
RULE_RESOURCES = {
    "md_torch": {"mem_mb": 4000, "runtime": 240}, "md_replica": {"mem_mb": 2000, "runtime": 240},
    "reference_samples": {"mem_mb": 4000, "runtime": 240}, "ot_pairs": {"mem_mb": 8000},
    "train_cnf": {"mem_mb": 4000, "runtime": 240}, "cnf_pairs_shard": {"mem_mb": 4000, "runtime": 240},
    "cnf_pairs": {"mem_mb": 2000, "runtime": 60},
    "train_flow": {"mem_mb": 4000, "runtime": 240}, "sample_flow": {"mem_mb": 4000, "runtime": 120},
    "sample_cnf": {"mem_mb": 4000, "runtime": 480}, "score_samples": {"mem_mb": 6000, "runtime": 60},
    "tfep": {"mem_mb": 6000, "runtime": 240}, "train_ebm": {"mem_mb": 4000, "runtime": 720},
    "train_sgds": {"mem_mb": 4000, "runtime": 720},
}


def test_rules_leave_resources_to_the_profiles():
    """Rules keep only threads; the default profile asks for what the rules used to, the SLURM
    profile for that or its own larger (per-attempt) amounts, and names only existing rules."""
    rules_text = "\n".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    assert "resources:" not in rules_text
    rule_names = set(re.findall(r"^\s*rule (\w+):", rules_text, flags=re.M))
    derived = {new: base for base, new in re.findall(r"^use rule (\w+) as (\w+) with:", rules_text, flags=re.M)}
    slurm_profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    default = yaml.safe_load((ROOT / "workflow/profiles/default/config.yaml").read_text())["set-resources"]
    slurm = slurm_profile["set-resources"]
    assert default == RULE_RESOURCES
    assert set(slurm) <= rule_names | set(derived) and set(default) <= rule_names
    # a rule reused by `use rule` (the ablations) asks SLURM for what its base rule asks
    assert derived.keys() >= {"train_ablation", "train_ablation_teacher", "ablation_pairs_shard"}
    for new, base in derived.items():
        assert slurm.get(new) == slurm.get(base), (new, base)
        assert slurm_profile["set-threads"].get(new) == slurm_profile["set-threads"].get(base), (new, base)
    for rule, wanted in RULE_RESOURCES.items():
        assert set(wanted) <= set(slurm[rule]), rule
        for key, value in wanted.items():
            asked = slurm[rule][key]
            assert asked == value or "attempt" in str(asked), (rule, key, asked)


def test_gpu_check_plans_every_stage_and_refuses_to_run_without_a_gpu(tmp_path):
    """`.ci/gpu-check --dry-run` validates the short paper configs and plans every stage's jobs;
    without a CUDA device the real check stops at once, saying why."""
    repo = workflow_copy(tmp_path)
    (repo / ".ci").mkdir()
    shutil.copy2(ROOT / ".ci/gpu-check", repo / ".ci/gpu-check")
    no_gpu = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", ".ci/gpu-check", "--dry-run"], cwd=repo, capture_output=True, text=True,
                          timeout=600, env=no_gpu)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "gpu-check: dry run, every stage planned" in out
    for job in ("md_replica", "train_cnf", "cnf_pairs_shard", "train_flow", "tfep", "train_ebm", "train_sgds"):
        assert re.search(rf"^{job}\s+\d+", out, flags=re.M), job
    proc = subprocess.run(["bash", ".ci/gpu-check"], cwd=repo, capture_output=True, text=True, timeout=600, env=no_gpu)
    assert proc.returncode != 0 and "gpu-check: torch sees no CUDA device" in proc.stderr
    assert not (repo / "results/gpu-check-al2").exists()
    # the check selects the GPU tests by their marker: every test skipped without CUDA carries it
    for path in (ROOT / "tests").glob("test_*.py"):
        text = path.read_text()
        skips = re.findall(r"^@pytest\.mark\.skipif\(not torch\.cuda\.is_available\(\)", text, flags=re.M)
        marked = re.findall(r"^@pytest\.mark\.cuda\n@pytest\.mark\.skipif\(not torch\.cuda", text, flags=re.M)
        assert len(marked) == len(skips), path.name
