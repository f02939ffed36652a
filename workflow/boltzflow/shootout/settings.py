"""Settings of the cross-method comparison: the ``shootout`` config section resolved for one target
(``shootout.per_target.<target>`` over the shared method sections), checked before any job runs.

This module imports neither torch nor OpenMM: the workflow resolves every run of a config when
it starts."""

from __future__ import annotations

from typing import Any, Mapping

from boltzflow.targets import exact_sampler_names, names_of_kind

__all__ = ["METHODS", "DIFFUSION_METHODS", "FLOW_METHODS", "PEPTIDE_METHODS", "METHOD_SECTIONS",
           "shootout_settings", "shootout_runs", "check_shootout"]

#: The samplers compared, in the order of the table and the figure
METHODS = ("pt", "flow_mle", "flow_regflow", "flowmc", "sgds", "tb", "tb_ls", "pis")
#: The methods whose per-iteration settings come from the ``sgds`` section
DIFFUSION_METHODS = ("sgds", "tb", "tb_ls", "pis")
#: The Boltzmann generators: a flow trained on parallel-tempering samples, then importance-weighted proposals
FLOW_METHODS = ("flow_mle", "flow_regflow")
#: The methods that run on a peptide (molecular dynamics with tempering, and flows on its samples)
PEPTIDE_METHODS = ("pt",) + FLOW_METHODS
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
    target needs reference samples (an exact sampler, or the MD frames of a peptide), every
    method must be known and run on its target (a peptide takes only :data:`PEPTIDE_METHODS`), and
    the per-target overrides must name known settings."""
    problems = []
    usable = set(exact_sampler_names()) | set(names_of_kind("peptide"))
    for target in section.get("targets", []):
        if target not in usable:
            problems.append(f"shootout.targets: {target!r} has no exact sampler or MD frames for reference samples "
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
            elif target in names_of_kind("peptide") and method not in PEPTIDE_METHODS:
                problems.append(f"{key}: {method} does not run on the peptide {target} (peptide methods: "
                                f"{', '.join(PEPTIDE_METHODS)}; set shootout.per_target.{target}.methods)")
    return problems
