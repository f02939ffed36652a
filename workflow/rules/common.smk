# Config validation (before any job is scheduled) and the helpers the rules share.
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow"))

from boltzflow.config import validate_config

# First the config, then the heavy imports (torch): a wrong key fails in seconds, naming the key.
validate_config(config, schema=Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")

from boltzflow.couplings.shards import shard_sizes
from boltzflow.ebm import check_ebm_section
from boltzflow.sgds import SGDS_METHODS, check_sgds_section
from boltzflow.shootout.settings import METHODS as SHOOTOUT_METHODS, shootout_runs, shootout_settings
from boltzflow.systems import get_spec
from boltzflow.targets import target_kind

OUT = f"results/{config['experiment']}"
BENCH = "results/benchmarks"
SYSTEMS = config["systems"]
FIG_FORMATS = config["figures"]["formats"]
FLOWS = config["flows"]
FLOW_SYSTEMS = SYSTEMS if FLOWS["systems"] is None else FLOWS["systems"]
EBM = config["ebm"]
SGDS = config["sgds"]
FEP_SYSTEMS = FLOW_SYSTEMS if config["fep"]["systems"] is None else config["fep"]["systems"]
# Scheduling priority of the peptide chain (system -> MD -> frame -> teacher -> pairs -> flows), the
# run's critical path: with it Snakemake starts MD first and fills the idle cores with the EBM and
# SGDS jobs, instead of starting MD after them.
CRITICAL_PATH = 10


wildcard_constraints:
    system=r"[A-Za-z0-9_]+",
    replica=r"\d+",
    job=r"\d+",
    target=r"[A-Za-z0-9_]+",
    method=r"regflow|mle",
    arch=r"affine|spline",
    seed=r"\d+",
    model=r"[A-Za-z0-9_]+(-[A-Za-z0-9_+.]+)*-seed\d+",
    variant=r"lam[0-9.e+-]+|pairs[0-9]+|teacher[0-9]+",
    teacher_steps=r"\d+",
    dataset=r"[A-Za-z0-9_]+",
    ebm_method=r"flowmc|ula",
    sgds_method="|".join(SGDS_METHODS),
    shootout_method="|".join(SHOOTOUT_METHODS),
    budget=r"\d+",


def system_spec(wildcards):
    """The peptide spec of a system (built-in or from config `peptides`), as a plain dict."""
    overrides = config["peptides"].get(wildcards.system, {})
    return get_spec(wildcards.system, **overrides).to_dict()


def flow_training_input(wildcards):
    inputs = {
        "frames": f"{OUT}/md/{wildcards.system}/frames.parquet",
        "split": f"{OUT}/md/{wildcards.system}/split.parquet",
        "frame": f"{OUT}/models/{wildcards.system}/frame.json",
    }
    if wildcards.method == "regflow":
        inputs["pairs"] = f"{OUT}/couplings/{wildcards.system}/{config['flows']['coupling']}.parquet"
        if config["flows"]["coupling"] == "cnf":  # the pairs must come from this teacher
            inputs["teacher"] = cnf_teacher_model(wildcards)
    return inputs


def cnf_teacher_settings(wildcards):
    """The settings that shape the CNF teacher itself: changing the number of pairs, their solver
    or the quality floor does not retrain it."""
    return {key: config["couplings"]["cnf"][key] for key in ("hidden", "layers", "train", "prior_pairing", "seed", "device")}


def cnf_teacher_model(wildcards):
    """The CNF teacher's checkpoint: the one whose reflow pairs the RegFlow students learn."""
    return f"{OUT}/models/{wildcards.system}/cnf-seed{config['couplings']['cnf']['seed']}/model.pt"


def cnf_pairs_input(wildcards):
    """The teacher, and its scored sample set when couplings.cnf.quality_floor sets any limit
    (the pairs are then made only from a teacher that passes it)."""
    inputs = {"model": cnf_teacher_model(wildcards)}
    if any(limit is not None for limit in config["couplings"]["cnf"]["quality_floor"].values()):
        inputs["teacher_metrics"] = f"{OUT}/metrics/{wildcards.system}/cnf-seed{config['couplings']['cnf']['seed']}.parquet"
    return inputs


def cnf_shard_sizes():
    """Pairs per reflow job: couplings.cnf.n_pairs in shards of at most shard_pairs."""
    return shard_sizes(config["couplings"]["cnf"]["n_pairs"], config["couplings"]["cnf"]["shard_pairs"])


def cnf_shard_files(wildcards):
    """The reflow shards of a system, in order (merged by rule cnf_pairs)."""
    return [f"{OUT}/couplings/{wildcards.system}/cnf-shards/{k}.parquet" for k in range(len(cnf_shard_sizes()))]


def shard_size(sizes, wildcards, setting):
    """How many pairs shard ``wildcards.shard`` of ``sizes`` makes (``setting``: the config key
    that set the total, named when the shard does not exist)."""
    shard = int(wildcards.shard)
    if shard >= len(sizes):
        raise ValueError(f"reflow shard {shard} does not exist: {setting} makes {len(sizes)} shard(s)")
    return sizes[shard]


def cnf_shard_pairs(wildcards):
    """How many pairs shard ``wildcards.shard`` of the main teacher makes."""
    return shard_size(cnf_shard_sizes(), wildcards, "couplings.cnf.n_pairs")


def flow_models(first_seed=False, with_teacher=False):
    """Model names ``{method}-{arch}-seed{seed}`` of every flow the config trains (or only those
    of its first seed); ``with_teacher`` adds ``cnf-seed{seed}``, the CNF teacher, when RegFlow
    flows are trained on its reflow pairs."""
    seeds = FLOWS["seeds"][:1] if first_seed else FLOWS["seeds"]
    names = [f"{m}-{a}-seed{s}" for m in FLOWS["methods"] for a in FLOWS["architectures"] for s in seeds]
    if with_teacher and FLOWS["coupling"] == "cnf" and "regflow" in FLOWS["methods"] and names:
        names.append(f"cnf-seed{config['couplings']['cnf']['seed']}")
    return names


def score_inputs(wildcards):
    """The inputs of score_samples: the sample set, the MD reference and the model's own
    reports (a CNF teacher has no invertibility report: it is invertible by construction)."""
    model_dir = f"{OUT}/models/{wildcards.system}/{wildcards.model}"
    inputs = {
        "samples": f"{OUT}/samples/{wildcards.system}/{wildcards.model}.parquet",
        "frames": f"{OUT}/md/{wildcards.system}/frames.parquet",
        "split": f"{OUT}/md/{wildcards.system}/split.parquet",
        "pdb": f"{OUT}/systems/{wildcards.system}/topology.pdb",
        "history": f"{model_dir}/history.parquet",
    }
    if not wildcards.model.startswith("cnf-"):
        inputs["invertibility"] = f"{model_dir}/invertibility.json"
    return inputs


def ablation_variants():
    """Names of the RegFlow ablation variants: ``lam<weight>``, ``pairs<n>`` and ``teacher<steps>``."""
    settings = config["ablation"]
    return ([f"lam{v:g}" for v in settings["lambda_reg"]] + [f"pairs{n}" for n in settings["n_pairs"]]
            + [f"teacher{n}" for n in settings["teacher_steps"]])


def ablation_models():
    settings = config["ablation"]
    return [f"regflow-{settings['architecture']}-{v}-seed{s}" for v in ablation_variants() for s in settings["seeds"]]


def ablation_main_models(wildcards):
    """The main RegFlow flows of the ablation's architecture, if the config trains them: the point
    where every ablation axis meets, drawn as a reference in the ablation figure."""
    arch = config["ablation"]["architecture"]
    if wildcards.system not in FLOW_SYSTEMS or "regflow" not in FLOWS["methods"] or arch not in FLOWS["architectures"]:
        return []
    return [f"regflow-{arch}-seed{s}" for s in FLOWS["seeds"]]


def ablation_plot_inputs(wildcards):
    main = ablation_main_models(wildcards)
    return {
        "ablations": [f"{OUT}/ablation/{wildcards.system}/metrics/{m}.parquet" for m in ablation_models()],
        "main_metrics": [f"{OUT}/metrics/{wildcards.system}/{m}.parquet" for m in main],
        "main_histories": [f"{OUT}/models/{wildcards.system}/{m}/history.parquet" for m in main],
    }


def ablation_flows(wildcards):
    """The flows config of one ablation variant: flows.* with its regulariser weight or its
    number of pairs; a ``teacher<steps>`` variant learns the reflow pairs of its own teacher."""
    flows = copy.deepcopy(config["flows"])
    if wildcards.variant.startswith("lam"):
        flows["regflow"]["lambda_reg"] = float(wildcards.variant[3:])
    elif wildcards.variant.startswith("pairs"):
        flows["regflow"]["n_pairs"] = int(wildcards.variant[5:])
    else:
        flows["coupling"] = "cnf"
    return flows


def ablation_training_input(wildcards):
    """A ``teacher<steps>`` variant trains on its own teacher's pairs; the others on the main ones."""
    inputs = flow_training_input(wildcards)
    if wildcards.variant.startswith("teacher"):
        steps = wildcards.variant[len("teacher"):]
        inputs["pairs"] = f"{OUT}/ablation/{wildcards.system}/couplings/cnf-steps{steps}.parquet"
        inputs["teacher"] = ablation_teacher_model(wildcards, steps)
    return inputs


def ablation_teacher_settings(wildcards):
    """The CNF teacher's settings with its training steps set by the ablation variant."""
    settings = copy.deepcopy(cnf_teacher_settings(wildcards))
    settings["train"]["steps"] = int(wildcards.teacher_steps)
    return settings


def ablation_shard_sizes():
    """Pairs per reflow job of an ablation teacher: ablation.teacher_pairs in shards."""
    return shard_sizes(config["ablation"]["teacher_pairs"], config["couplings"]["cnf"]["shard_pairs"])


def ablation_shard_files(wildcards):
    folder = f"{OUT}/ablation/{wildcards.system}/couplings"
    return [f"{folder}/cnf-steps{wildcards.teacher_steps}-shards/{k}.parquet" for k in range(len(ablation_shard_sizes()))]


def ablation_teacher_model(wildcards, steps=None):
    """The checkpoint of the ablation teacher trained ``steps`` (default: the ``teacher_steps``
    wildcard) steps."""
    steps = wildcards.teacher_steps if steps is None else steps
    return f"{OUT}/ablation/{wildcards.system}/cnf-steps{steps}-seed{config['couplings']['cnf']['seed']}/model.pt"


def ablation_shard_pairs(wildcards):
    return shard_size(ablation_shard_sizes(), wildcards, "ablation.teacher_pairs")


def ablation_score_inputs(wildcards):
    folder = f"{OUT}/ablation/{wildcards.system}"
    return {
        "samples": f"{folder}/samples/{wildcards.model}.parquet",
        "frames": f"{OUT}/md/{wildcards.system}/frames.parquet",
        "split": f"{OUT}/md/{wildcards.system}/split.parquet",
        "pdb": f"{OUT}/systems/{wildcards.system}/topology.pdb",
        "history": f"{folder}/{wildcards.model}/history.parquet",
        "invertibility": f"{folder}/{wildcards.model}/invertibility.json",
    }


# every EBM and SGDS run resolved now, so that a wrong key, dataset or target fails first
check_ebm_section(EBM)
check_sgds_section(SGDS)


def sgds_particle_targets():
    """The SGDS targets that are particle systems (reference samples from rule reference_samples)."""
    return [t for t in SGDS["targets"] if target_kind(t) == "particle"]


def sgds_runs(particles=False):
    """``{target}/{method}-seed{seed}`` of every SGDS run the config asks for (``particles``: on
    particle targets only)."""
    targets = sgds_particle_targets() if particles else SGDS["targets"]
    return [f"{t}/{m}-seed{s}" for t in targets for m in SGDS["methods"] for s in SGDS["seeds"]]


def sgds_reference(wildcards):
    """The reference sample set of an SGDS target without an exact sampler: parallel-tempering
    samples (LJ clusters, dw4) or the MD frames (peptides); none for the others."""
    kind = target_kind(wildcards.target)
    if kind == "peptide":
        return [f"{OUT}/md/{wildcards.target}/frames.parquet"]
    return [f"{OUT}/reference/{wildcards.target}.parquet"] if kind == "particle" else []


def ebm_runs():
    """``{dataset}/{method}-seed{seed}`` of every EBM run the config asks for."""
    return [f"{d}/{m}-seed{s}" for d in EBM["datasets"] for m in EBM["methods"] for s in EBM["seeds"]]


def ebm_user_data(wildcards):
    """The user's data file of a dataset, if it is one (so that a changed file reruns the jobs)."""
    path = EBM["user_data"].get(wildcards.dataset)
    return {"user_data": path} if path else {}


def figure_paths(name):
    return [f"{OUT}/figures/{{system}}/{name}.{ext}" for ext in FIG_FORMATS]


def shootout_rows():
    """Every run row and exact-samples floor row of the comparison (each target with its own
    methods, budgets and seeds)."""
    sh = config["shootout"]
    runs = [f"{OUT}/shootout/{t}/{m}-b{b}-seed{s}.parquet" for t, m, b, s in shootout_runs(sh)]
    return runs + [f"{OUT}/shootout/{t}/exact-seed{s}.parquet" for t in sh["targets"]
                   for s in shootout_settings(sh, t)["seeds"]]


def shootout_reference(wildcards):
    """The reference files of a comparison target: a peptide's MD frames and split, a particle
    system's parallel-tempering samples (none for a density with an exact sampler)."""
    kind = target_kind(wildcards.target)
    if kind == "peptide":
        return {"frames": f"{OUT}/md/{wildcards.target}/frames.parquet",
                "split": f"{OUT}/md/{wildcards.target}/split.parquet"}
    return {"reference": f"{OUT}/reference/{wildcards.target}.parquet"} if kind == "particle" else {}


def shootout_outputs():
    """The comparison's table and figure (none when shootout.targets is empty)."""
    if not config["shootout"]["targets"]:
        return []
    return [f"{OUT}/tables/shootout.md", f"{OUT}/tables/shootout.parquet"] + [
        f"{OUT}/figures/shootout.{ext}" for ext in FIG_FORMATS]


def all_outputs():
    targets = []
    for system in SYSTEMS:
        targets += [
            f"{OUT}/md/{system}/frames.parquet",
            f"{OUT}/md/{system}/dihedrals.parquet",
            f"{OUT}/md/{system}/split.parquet",
            f"{OUT}/md/{system}/convergence.parquet",
            f"{OUT}/md/{system}/convergence.md",
        ]
        for name in ("md_ramachandran", "md_energy", "md_populations"):
            targets += [p.format(system=system) for p in figure_paths(name)]
    for system in FLOW_SYSTEMS:
        targets += [f"{OUT}/models/{system}/{model}/model.pt" for model in flow_models()]
        if flow_models():
            targets += [f"{OUT}/tables/{system}_flows.md", f"{OUT}/tables/{system}_flows.parquet"]
            targets += [p.format(system=system) for p in figure_paths("flow_samples")]
    if FLOW_SYSTEMS and flow_models():
        targets += [f"{OUT}/tables/summary_flows.md"]
    for system in config["ablation"]["systems"]:
        targets += [f"{OUT}/tables/{system}_ablation.md"] + [p.format(system=system) for p in figure_paths("ablation")]
    for system in FEP_SYSTEMS:
        targets += [f"{OUT}/tables/{system}_fep.md"] + [p.format(system=system) for p in figure_paths("fep")]
    targets += [f"{OUT}/reference/{name}.parquet" for name in config["reference"]["targets"]]
    if ebm_runs():
        targets += [f"{OUT}/tables/ebm_summary.md", f"{OUT}/tables/ebm_mode_weights.md", f"{OUT}/tables/ebm_rhat.md"]
        targets += [f"{OUT}/figures/ebm_{name}.{ext}" for name in ("mode_weights", "densities") for ext in FIG_FORMATS]
    if sgds_runs():
        targets += [f"{OUT}/tables/sgds.md"]
        targets += [f"{OUT}/figures/sgds_{name}.{ext}" for name in ("gap", "samples") for ext in FIG_FORMATS]
    targets += shootout_outputs()
    if sgds_particle_targets():
        targets += [f"{OUT}/figures/sgds_particles.{ext}" for ext in FIG_FORMATS]
    return targets
