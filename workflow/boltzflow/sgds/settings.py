"""The settings of one SGDS run (:class:`SGDSSettings`), resolved from the ``sgds`` config section
and checked against its target, and which targets an SGDS run can use.

This module imports neither torch nor OpenMM: the workflow checks every SGDS run of a config when
Snakemake reads the Snakefile, before any job runs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from boltzflow.targets import exact_sampler_names, names_of_kind

__all__ = ["SGDS_METHODS", "SEARCHERS", "TIME_GRIDS", "SGDSSettings", "resolve_sgds_run", "check_sgds_section",
           "check_sgds_target",
           "sgds_target_names", "needs_reference_file"]

SGDS_METHODS = ("sgds", "tb", "tb_buffer", "tb_ls", "pis")
SEARCHERS = ("mala", "ais", "md")
TIME_GRIDS = ("uniform", "random")


@dataclass(frozen=True)
class SGDSSettings:
    """Everything that defines one SGDS run or baseline (see ``sgds`` in the config schema); bad
    values raise ``ValueError``.

    >>> settings = SGDSSettings(method="tb", iterations=(100,), exploration_std=0.4)
    >>> settings.rounds, settings.exploration_at(25, 0)
    (1, 0.2)
    """

    method: str = "sgds"
    # learner
    n_steps: int = 100
    sigma: float = 1.0
    network: str = "mlp"  # mlp (PIS-style) or egnn (particle targets)
    hidden: int = 256
    depth: int = 2  # hidden layers of the MLP, equivariant layers of the EGNN
    harmonics: int = 64
    max_energy: float | None = None  # the Learner's log-reward is -min(E, max_energy) (None: no cap)
    iterations: tuple[int, ...] = (25_000, 30_000)
    batch_size: int = 300
    lr_policy: float = 1e-3
    lr_log_z: float = 1e-3
    grad_clip: float = 100.0
    mle_warmup: int = 0  # first iterations of each round: forward-path maximum likelihood on buffer points
    time_grid: str = "uniform"  # training grid: uniform, or random (a new grid every iteration; evaluation is uniform)
    exploration_std: float = 0.0  # extra noise std of on-policy TB trajectories, falling linearly to 0 at mid-round
    eval_steps: int | None = None  # steps of the uniform grid at evaluation (the paper: 500 for LJ, peptides); None: n_steps
    # buffer
    buffer_capacity: int = 600_000
    rank_weight: float = 1e-2
    # searcher: MALA chains, AIS (annealed importance sampling from the prior) or MD (peptides)
    searcher: str = "mala"
    searcher_chains: int = 300
    searcher_steps: int = 4000
    searcher_burn_in: int = 2000
    searcher_step_size: float = 1e-3
    searcher_prior_std: float = 1.0
    target_acceptance: float = 0.574
    searcher_adapt_factor: float = 1.01
    # md searcher (peptides): Langevin dynamics at one temperature per round (the last repeats)
    searcher_temperatures: tuple[float, ...] = (600.0, 300.0)
    searcher_timestep_fs: float = 0.5
    searcher_friction: float = 1.0
    searcher_keep_every: int = 1
    # novelty bonus
    rnd_alpha: float = 100.0
    rnd_hidden: int = 256
    rnd_network: str = "mlp"  # mlp (flattened coordinates) or egnn (invariant novelty; particle targets)
    # tb_ls: local search (MALA from buffer points, searcher_step_size / target_acceptance / adapt factor)
    ls_every: int = 100
    ls_steps: int = 200
    history_every: int = 100
    checkpoint_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.method in SGDS_METHODS, f"method must be one of {', '.join(SGDS_METHODS)}, got {self.method!r}"),
            (len(self.iterations) >= 1 and all(i >= 1 for i in self.iterations), "iterations: one count >= 1 per round"),
            (self.n_steps >= 1 and self.sigma > 0 and self.batch_size >= 1, "need n_steps >= 1, sigma > 0, batch_size >= 1"),
            (self.searcher in SEARCHERS, f"searcher must be one of {', '.join(SEARCHERS)}, got {self.searcher!r}"),
            (0 <= self.searcher_burn_in < self.searcher_steps and self.searcher_chains >= 1,
             "need 0 <= searcher_burn_in < searcher_steps and searcher_chains >= 1"),
            (self.searcher_adapt_factor >= 1, "searcher_adapt_factor must be >= 1"),
            (self.mle_warmup >= 0, "mle_warmup must be >= 0"),
            (self.time_grid in TIME_GRIDS, f"time_grid must be one of {', '.join(TIME_GRIDS)}, got {self.time_grid!r}"),
            (self.eval_steps is None or self.eval_steps >= 1, "eval_steps must be >= 1 (or None: n_steps)"),
            (self.ls_every >= 1 and self.ls_steps >= 1, "ls_every and ls_steps must be >= 1"),
            (self.exploration_std >= 0 and not (self.method == "pis" and self.exploration_std > 0),
             "exploration_std must be >= 0, and 0 for pis (its gradient is taken on-policy)"),
            (self.network in ("mlp", "egnn"), f"network must be mlp or egnn, got {self.network!r}"),
            (self.rnd_network in ("mlp", "egnn"), f"rnd_network must be mlp or egnn, got {self.rnd_network!r}"),
            (len(self.searcher_temperatures) >= 1 and min(self.searcher_temperatures) > 0
             and self.searcher_timestep_fs > 0 and self.searcher_friction >= 0 and self.searcher_keep_every >= 1,
             "md searcher: need temperatures > 0 K, timestep_fs > 0, friction >= 0, keep_every >= 1"),
            (self.searcher_step_size > 0 and self.searcher_prior_std > 0 and self.rnd_alpha >= 0,
             "searcher_step_size and searcher_prior_std must be > 0, rnd_alpha >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SGDS settings: {message}")

    @property
    def rounds(self) -> int:
        return 1 if self.method in ("tb", "tb_ls", "pis") else len(self.iterations)

    def exploration_at(self, iteration: int, round_index: int) -> float:
        """The extra noise std of on-policy trajectories at ``iteration`` of round ``round_index``:
        ``exploration_std``, falling linearly to 0 at half the round's iterations (ours; Sendera et
        al. 2024 anneal it too)."""
        half = 0.5 * self.iterations[round_index]
        return self.exploration_std * max(0.0, 1.0 - iteration / half)


def resolve_sgds_run(sgds_cfg: Mapping[str, Any], target: str, method: str, seed: int) -> SGDSSettings:
    """``sgds.settings`` with ``sgds.per_target.<target>`` merged over it, as :class:`SGDSSettings`;
    errors name the target and method."""
    merged = {**dict(sgds_cfg.get("settings", {})), **dict(sgds_cfg.get("per_target", {}).get(target, {}))}
    known = {f.name for f in fields(SGDSSettings)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValueError(f"sgds settings of target {target!r}: unknown key(s) {', '.join(unknown)}")
    if "iterations" in merged:
        merged["iterations"] = tuple(int(i) for i in merged["iterations"])
    if "searcher_temperatures" in merged:
        merged["searcher_temperatures"] = tuple(float(t) for t in merged["searcher_temperatures"])
    try:
        settings = SGDSSettings(**{**merged, "method": method, "seed": int(seed)})
    except (TypeError, ValueError) as err:
        raise ValueError(f"sgds settings of target {target!r}, method {method!r}: {err}") from err
    structured = names_of_kind("particle") + names_of_kind("peptide")
    if settings.network == "egnn" and target not in structured:
        raise ValueError(f"sgds settings of target {target!r}: network egnn needs a particle or peptide target "
                         f"({', '.join(structured)})")
    if settings.rnd_network == "egnn" and target not in structured and method == "sgds":
        raise ValueError(f"sgds settings of target {target!r}: rnd_network egnn needs a particle or peptide target "
                         f"({', '.join(structured)})")
    if settings.searcher == "md" and target not in names_of_kind("peptide") and method in ("sgds", "tb_buffer"):
        raise ValueError(f"sgds settings of target {target!r}: searcher md needs a peptide target "
                         f"({', '.join(names_of_kind('peptide'))})")
    return settings


def check_sgds_target(name: str) -> None:
    """Raise ``ValueError`` naming ``sgds.targets`` unless ``name`` is a target an SGDS run can
    use; by name only (building a peptide takes seconds, too long for a check at parse time)."""
    known = sgds_target_names()
    if name not in known:
        raise ValueError(f"sgds.targets: {name!r} is not a target with exact or reference samples; "
                         f"known: {', '.join(known)}")


def sgds_target_names() -> list[str]:
    """The targets an SGDS run can use."""

    exact = exact_sampler_names()
    return exact + [n for n in names_of_kind("particle") + names_of_kind("peptide") if n not in exact]


def needs_reference_file(name: str) -> bool:
    """Whether target ``name`` takes its reference samples from a file: ``reference/{name}.parquet``
    (particle targets) or ``md/{name}/frames.parquet`` (peptides)."""
    return name in names_of_kind("particle") + names_of_kind("peptide")


def check_sgds_section(sgds_cfg: Mapping[str, Any]) -> None:
    """Resolve every SGDS run of the (schema-validated) ``sgds`` config section and check its
    target, so that a wrong key or target fails before any job runs, naming it."""
    known = sgds_target_names()
    for name in sgds_cfg["per_target"]:
        if name not in known:
            raise ValueError(f"sgds.per_target.{name}: unknown target; known: {', '.join(known)}")
        resolve_sgds_run(sgds_cfg, name, sgds_cfg["methods"][0], 0)
    for target in sgds_cfg["targets"]:
        check_sgds_target(target)
        for method in sgds_cfg["methods"]:
            resolve_sgds_run(sgds_cfg, target, method, sgds_cfg["seeds"][0])
