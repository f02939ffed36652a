"""The settings of one EBM run (:class:`EBMSettings`, :class:`RunConfig`), resolved from the ``ebm``
config section, and the datasets a run may name.

This module imports neither torch nor OpenMM: the workflow resolves every EBM run of a config when
Snakemake reads the Snakefile, so that a wrong key fails before any job runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from boltzflow.targets import exact_sampler_names

__all__ = ["METHODS", "METHOD_DEFAULTS", "EBMSettings", "RunConfig", "check_ebm_section", "check_overrides",
           "resolve_run", "known_dataset_names"]

METHODS = ("flowmc", "ula")


@dataclass(frozen=True)
class EBMSettings:
    """Everything that defines one training run (see ``ebm`` in the config schema).

    >>> settings = EBMSettings(method="flowmc", iterations=100, lr_schedule="cosine")
    >>> settings.uses_flow, settings.lr_factor(0), round(settings.lr_factor(99), 3)
    (True, 1.0, 0.01)
    """

    method: str
    iterations: int
    batch_size: int = 256
    n_persistent: int = 8192
    lr_ebm: float = 1e-3
    lr_flow: float = 1e-3
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.01
    l2_energy: float = 0.0
    grad_clip: float = 100.0
    # sampler: n_cycles x (n_global global steps, then n_local local steps)
    n_cycles: int = 5
    n_global: int = 1
    n_local: int = 24
    n_particles: int = 64
    global_kind: str = "isir"
    local_kernel: str = "mala"
    step_size: float = 0.01
    target_acceptance: float = 0.574
    adapt_step: bool = True
    negatives: str = "all"
    thin: int = 1
    init: str = "flow"
    history_every: int = 50
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, got {self.method!r}"),
            (self.iterations >= 1, f"iterations must be >= 1, got {self.iterations}"),
            (self.batch_size >= 1 and self.n_persistent >= self.batch_size,
             f"need 1 <= batch_size <= n_persistent, got {self.batch_size} and {self.n_persistent}"),
            (self.global_kind in ("isir", "imh", "none"), f"global_kind must be isir, imh or none, got {self.global_kind!r}"),
            (self.local_kernel in ("mala", "ula"), f"local_kernel must be mala or ula, got {self.local_kernel!r}"),
            (self.negatives in ("all", "last"), f"negatives must be all or last, got {self.negatives!r}"),
            (self.lr_schedule in ("constant", "cosine"), f"lr_schedule must be constant or cosine, got {self.lr_schedule!r}"),
            (0 < self.lr_final_fraction <= 1, f"lr_final_fraction must be in (0, 1], got {self.lr_final_fraction}"),
            (self.init in ("flow", "uniform"), f"init must be flow or uniform, got {self.init!r}"),
            (self.n_cycles >= 1 and self.n_local >= 0 and self.n_global >= 0 and self.n_global + self.n_local >= 1,
             "the sampler needs n_cycles >= 1 and at least one step per cycle"),
            (self.thin >= 1 and self.history_every >= 1 and self.checkpoint_every >= 1,
             "thin, history_every and checkpoint_every must be >= 1"),
            (self.step_size > 0 and self.lr_ebm > 0 and self.lr_flow > 0, "step_size and learning rates must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"EBM settings: {message}")

    @property
    def uses_flow(self) -> bool:
        return self.global_kind != "none"

    def lr_factor(self, iteration: int) -> float:
        """The factor on both learning rates at ``iteration`` (0-based)."""
        if self.lr_schedule == "constant" or self.iterations <= 1:
            return 1.0
        progress = min(iteration / (self.iterations - 1), 1.0)
        return self.lr_final_fraction + (1.0 - self.lr_final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "EBMSettings":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - names)
        if unknown:
            raise ValueError(f"unknown EBM training setting(s) {', '.join(unknown)}")
        return cls(**dict(cfg))


#: Sampler settings of each method (the paper's Table for the 2-D mixture); ebm.<method> in the
#: config and ebm.per_dataset.<dataset>.<method> override them key by key.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "flowmc": {"n_cycles": 5, "n_global": 1, "n_local": 24, "n_particles": 64, "global_kind": "isir",
               "local_kernel": "mala", "step_size": 0.01, "target_acceptance": 0.574, "adapt_step": True,
               "negatives": "all", "thin": 1, "init": "flow"},
    "ula": {"n_cycles": 1, "n_global": 0, "n_local": 512, "n_particles": 2, "global_kind": "none",
            "local_kernel": "ula", "step_size": 0.125**2 / 2, "target_acceptance": 0.574, "adapt_step": False,
            "negatives": "last", "thin": 1, "init": "uniform"},
}


@dataclass(frozen=True)
class RunConfig:
    """The resolved settings of one (dataset, method, seed) run.

    >>> from boltzflow.config import layered_section
    >>> run = resolve_run(layered_section([], "ebm"), "gmm4_d16", "ula", seed=0)
    >>> run.settings.method, run.settings.local_kernel
    ('ula', 'ula')
    """

    settings: EBMSettings
    energy: dict[str, Any]
    flow: dict[str, Any]
    n_data: int
    epochs: float

    def as_dict(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "energy": self.energy, "flow": self.flow,
                "n_data": self.n_data, "epochs": self.epochs}


def check_overrides(ebm_cfg: Mapping[str, Any], dataset: str) -> None:
    """Raise ``ValueError`` naming the config path if ``ebm.per_dataset.<dataset>`` has a key that
    ``ebm.train``, ``ebm.energy`` or ``ebm.flow`` do not know (the sampler sections are checked
    by the schema)."""
    over = dict(ebm_cfg.get("per_dataset", {}).get(dataset, {}))
    for section in ("train", "energy", "flow"):
        known = set(ebm_cfg[section])
        unknown = sorted(set(over.get(section, {})) - known)
        if unknown:
            raise ValueError(f"ebm.per_dataset.{dataset}.{section}: unknown key(s) {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(known))}")


def resolve_run(ebm_cfg: Mapping[str, Any], dataset: str, method: str, seed: int,
                n_data: int | None = None) -> RunConfig:
    """Merge ``ebm.*``, the method's defaults and ``ebm.per_dataset.<dataset>`` into one run's
    settings; unknown keys raise ``ValueError`` naming the config path. ``n_data`` (the size of a
    user's array) replaces the configured number of points, which sets the iterations per epoch."""
    if method not in METHODS:
        raise ValueError(f"ebm.methods: unknown method {method!r}; known: {', '.join(METHODS)}")
    check_overrides(ebm_cfg, dataset)
    over = dict(ebm_cfg.get("per_dataset", {}).get(dataset, {}))
    train = {**ebm_cfg["train"], **over.get("train", {})}
    sampler = {**METHOD_DEFAULTS[method], **ebm_cfg.get(method, {}), **over.get(method, {})}
    energy = {**ebm_cfg["energy"], **over.get("energy", {})}
    flow = {**ebm_cfg["flow"], **over.get("flow", {})}
    n_data = int(n_data if n_data is not None else over.get("n_data", ebm_cfg["n_data"]))
    epochs = float(train.pop("epochs"))
    iterations = max(1, math.ceil(epochs * n_data / int(train["batch_size"])))
    try:
        settings = EBMSettings.from_config({**train, **sampler, "method": method, "iterations": iterations,
                                            "seed": int(seed)})
    except (TypeError, ValueError) as err:
        raise ValueError(f"ebm settings of dataset {dataset!r}, method {method!r}: {err}") from err
    return RunConfig(settings, energy, flow, n_data, epochs)


def known_dataset_names(ebm_cfg: Mapping[str, Any]) -> set[str]:
    """Names ``ebm.datasets`` may use: synthetic targets with exact samplers and ``ebm.user_data`` entries."""

    return set(exact_sampler_names()) | set(ebm_cfg.get("user_data", {}))


def check_ebm_section(ebm_cfg: Mapping[str, Any]) -> None:
    """Resolve every EBM run of the (schema-validated) ``ebm`` config section, so that a wrong key
    or dataset fails before any job runs, naming it.

    ``per_dataset`` may hold settings of datasets a run leaves out (a ``--configfile`` is layered
    on ``config/config.yaml``), but every entry must name a dataset that exists and use known keys.
    """
    known = known_dataset_names(ebm_cfg)
    for name in ebm_cfg["per_dataset"]:
        if name not in known:
            raise ValueError(f"ebm.per_dataset.{name}: unknown dataset; known: {', '.join(sorted(known))}")
    for dataset in ebm_cfg["datasets"]:
        if dataset not in known:
            raise ValueError(f"ebm.datasets: unknown dataset {dataset!r}; known: {', '.join(sorted(known))}")
    for dataset in ebm_cfg["per_dataset"]:
        check_overrides(ebm_cfg, dataset)
    for dataset in ebm_cfg["datasets"]:
        for method in ebm_cfg["methods"]:
            resolve_run(ebm_cfg, dataset, method, ebm_cfg["seeds"][0])
