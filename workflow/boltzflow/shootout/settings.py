"""Settings of the cross-method comparison: the ``shootout`` config section resolved for one target
(``shootout.per_target.<target>`` over the shared method sections), checked before any job runs.

This module imports neither torch nor OpenMM: the workflow resolves every run of a config when
it starts."""

from __future__ import annotations

from typing import Any, Mapping

from boltzflow.targets import exact_sampler_names

__all__ = ["METHODS", "DIFFUSION_METHODS", "METHOD_SECTIONS", "shootout_settings", "check_shootout"]

#: The samplers compared, in the order of the table and the figure
METHODS = ("pt", "flow_mle", "flowmc", "sgds", "tb", "tb_ls", "pis")
#: The methods whose per-iteration settings come from the ``sgds`` section
DIFFUSION_METHODS = ("sgds", "tb", "tb_ls", "pis")
#: The sections of ``shootout`` that hold one method's settings (``per_target`` may override them)
METHOD_SECTIONS = ("pt", "flow_mle", "flowmc", "sgds")


def shootout_settings(section: Mapping[str, Any], target: str) -> dict[str, Any]:
    """``shootout`` with ``per_target.<target>`` merged over it (method sections key by key);
    raises ``ValueError`` naming the key for an unknown one."""
    override = dict(section.get("per_target", {}).get(target, {}))
    merged = {key: (dict(value) if isinstance(value, Mapping) else value) for key, value in section.items()
              if key != "per_target"}
    for key, value in override.items():
        if key not in merged:
            raise ValueError(f"shootout.per_target.{target}.{key}: not a shootout setting")
        if isinstance(merged[key], dict):
            if not isinstance(value, Mapping):
                raise ValueError(f"shootout.per_target.{target}.{key}: must be a mapping")
            unknown = sorted(set(value) - set(merged[key]))
            if unknown:
                raise ValueError(f"shootout.per_target.{target}.{key}: unknown key(s) {', '.join(unknown)}")
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def check_shootout(section: Mapping[str, Any]) -> list[str]:
    """Problems of the ``shootout`` section, each naming its key (empty when it is fine): every
    target needs an exact sampler (its reference samples), every method must be known, and the
    per-target overrides must name known settings."""
    problems = []
    exact = set(exact_sampler_names())
    for target in section.get("targets", []):
        if target not in exact:
            problems.append(f"shootout.targets: {target!r} has no exact sampler for reference samples "
                            f"(supported: {', '.join(sorted(exact))})")
    for method in section.get("methods", []):
        if method not in METHODS:
            problems.append(f"shootout.methods: unknown method {method!r} (known: {', '.join(METHODS)})")
    for target in section.get("per_target", {}):
        try:
            shootout_settings(section, target)
        except ValueError as err:
            problems.append(str(err))
    return problems
