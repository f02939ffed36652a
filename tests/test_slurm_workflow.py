"""The smoke workflow through a real local SLURM cluster, with the project's slurm profile.

Skipped with a reason when SLURM is not installed here; with BOLTZFLOW_REQUIRE_SLURM=1 (as in
CI) a missing SLURM is a failure.
"""

import numpy as np
import pytest
from boltzflow.io import read_sample_set
from slurm_cluster import SNAKEMAKE_SLURM_FLAGS
from workflow_helpers import snakemake, workflow_copy

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]


def test_smoke_workflow_through_slurm(local_slurm, tmp_path):
    repo = workflow_copy(tmp_path)
    # a short MD, so that each SLURM job ends before the executor's status checks back off (it waits
    # 2, then 12, then 22 s more between checks while no job has finished)
    (repo / "config/slurm_test.yaml").write_text("md: {length_ps: 2, checkpoint_interval_ps: 2}\nablation: {systems: []}\nfep: {systems: []}\n")
    # three stages of the MD chain (build, two parallel-tempering jobs, gather) and an SGDS sampler beside
    # it (its own resources); not the whole DAG: every stage costs ~35 s of start-up and status polling
    targets = ["results/smoke/sgds/gmm40/sgds-seed0/model.pt", "results/smoke/md/al2/frames.parquet"]
    proc = snakemake(
        repo,
        *targets,
        "--workflow-profile", "workflow/profiles/slurm",
        "--configfile", "config/smoke.yaml", "config/slurm_test.yaml",
        *SNAKEMAKE_SLURM_FLAGS,
        "--jobs", "2",
        "--latency-wait", "10",
        # the profile's partition/account are placeholders a user fills in; point them here
        "--default-resources", f"slurm_partition={local_slurm.partition}", "mem_mb=1000", "runtime=10",
        env=local_slurm.subprocess_env(),
        timeout=900,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:] + "\n" + local_slurm.logs_tail()
    # every job went through sbatch
    submitted = output.count("SLURM jobid")
    assert submitted == 5, output[-4000:]  # build_system, md_torch x 2, md_gather, train_sgds
    frames = read_sample_set(repo / "results/smoke/md/al2/frames.parquet", expected_dim=66)
    assert len(frames) == 4 * 20 and np.isfinite(frames.energy).all()  # 4 ladders x 2 ps / 0.1 ps
    assert len(frames.metadata["parts"]) == 2  # the two md_torch jobs, each through sbatch
    assert (repo / "results/smoke/sgds/gmm40/sgds-seed0/model.pt").exists()
    assert "Rule: train_sgds" in output or "rule train_sgds" in output
