"""Settings of the cross-method comparison: the ``shootout`` config section resolved for one target
(``shootout.per_target.<target>`` over the shared method sections), checked before any job runs.

This module imports neither torch nor OpenMM: the workflow resolves every run of a config when
it starts."""

from __future__ import annotations

from typing import Any, Mapping

from boltzflow.targets import exact_sampler_names, names_of_kind, target_kind

__all__ = ["METHODS", "DIFFUSION_METHODS", "FLOW_METHODS", "STRUCTURED_METHODS", "METHOD_SECTIONS",
           "shootout_settings", "shootout_runs", "check_shootout"]

#: The samplers compared, in the order of the table and the figure
METHODS = ("pt", "flow_mle", "flow_regflow", "flowmc", "sgds", "tb", "tb_ls", "pis")
#: The methods whose per-iteration settings come from the ``sgds`` section
DIFFUSION_METHODS = ("sgds", "tb", "tb_ls", "pis")
#: The Boltzmann generators: a flow trained on parallel-tempering samples, then importance-weighted proposals
FLOW_METHODS = ("flow_mle", "flow_regflow")
#: The methods that run on a peptide (molecular dynamics with tempering, and flows on its samples)
#: or a particle system (MALA tempering, and flows in centroid-free coordinates): the others work in
#: the target's own coordinates, where such a density has a translation-invariant, improper part
STRUCTURED_METHODS = ("pt",) + FLOW_METHODS
#: The sections of ``shootout`` that hold one method's settings (``per_target`` may override them)
METHOD_SECTIONS = ("pt", "md", "flow_mle", "flow_regflow", "flowmc", "sgds")


def _merge(base: dict[str, Any], override: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``, nested mappings key by key; an unknown key
    raises ``ValueError`` naming it."""
    unknown = sorted(set(override) - set(base))
    if unknown:
        raise ValueError(f"{key}: unknown key(s) {', '.join(unknown)}")
    merged = dict(base)
    for name, value in override.items():
        if isinstance(base[name], Mapping):
            if not isinstance(value, Mapping):
                raise ValueError(f"{key}.{name}: must be a mapping")
            merged[name] = _merge(dict(base[name]), value, f"{key}.{name}")
        else:
            merged[name] = value
    return merged


def shootout_settings(section: Mapping[str, Any], target: str) -> dict[str, Any]:
    """``shootout`` with ``per_target.<target>`` merged over it (method sections key by key, down
    to nested ones such as ``flow_regflow.teacher``); raises ``ValueError`` naming the key for an
    unknown one."""
    override = dict(section.get("per_target", {}).get(target, {}))
    merged = {key: value for key, value in section.items() if key != "per_target"}
    for key in override:
        if key not in merged:
            raise ValueError(f"shootout.per_target.{target}.{key}: not a shootout setting")
    return _merge(merged, override, f"shootout.per_target.{target}")


def shootout_runs(section: Mapping[str, Any]) -> list[tuple[str, str, int, int]]:
    """``(target, method, budget, seed)`` of every run of the comparison: each target with its own
    ``methods``, ``budgets`` and ``seeds`` (``per_target`` may set them)."""
    runs = []
    for target in section.get("targets", []):
        settings = shootout_settings(section, target)
        runs += [(target, method, int(budget), int(seed)) for method in settings["methods"]
                 for budget in settings["budgets"] for seed in settings["seeds"]]
    return runs


def check_shootout(section: Mapping[str, Any]) -> list[str]:
    """Problems of the ``shootout`` section, each naming its key (empty when it is fine): every
    target needs reference samples (an exact sampler, the MD frames of a peptide, the
    parallel-tempering reference of a particle system), every method must be known and run on its
    target (peptides and particle systems take only :data:`STRUCTURED_METHODS`), and the
    per-target overrides must name known settings."""
    problems = []
    structured = set(names_of_kind("peptide")) | set(names_of_kind("particle"))
    usable = set(exact_sampler_names()) | structured
    for target in section.get("targets", []):
        if target not in usable:
            problems.append(f"shootout.targets: {target!r} has no exact sampler, MD frames or reference samples "
                            f"(supported: {', '.join(sorted(usable))})")
    for target in section.get("per_target", {}):
        try:
            shootout_settings(section, target)
        except ValueError as err:
            problems.append(str(err))
    for target in section.get("targets", []):
        try:
            methods = shootout_settings(section, target).get("methods", [])
        except ValueError:
            continue  # reported above
        key = f"shootout.per_target.{target}.methods" if "methods" in section.get("per_target", {}).get(target, {}) \
            else "shootout.methods"
        for method in methods:
            if method not in METHODS:
                problems.append(f"{key}: unknown method {method!r} (known: {', '.join(METHODS)})")
            elif target in structured and method not in STRUCTURED_METHODS:
                problems.append(f"{key}: {method} does not run on the {target_kind(target)} target {target} "
                                f"(its methods: {', '.join(STRUCTURED_METHODS)}; set shootout.per_target.{target}.methods)")
    return problems
