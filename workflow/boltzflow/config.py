"""Workflow configuration: JSON-Schema validation with defaults, and checks across keys.

:func:`validate_config` is what the Snakefile calls before any job is scheduled. It fills
defaults in place, rejects unknown keys and wrong types, and then checks what a schema cannot
express (that every system is known, that files exist for ``md.source: file``, that the split
fractions add up to one). Every error names the offending key as a dotted path, e.g.
``md.length_ps``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, MutableMapping

import jsonschema
import yaml

from boltzflow.md import torch_md_settings  # md.settings: numpy only
from boltzflow.shootout.settings import check_shootout  # the catalogue only: no torch
from boltzflow.targets import target_names  # the catalogue: no torch

__all__ = ["ConfigError", "DEFAULT_SCHEMA", "DEFAULT_CONFIG", "load_schema", "validate_config", "validate_section",
           "layered_section", "system_names"]

DEFAULT_SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "config.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key."""


def load_schema(path: str | Path = DEFAULT_SCHEMA) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _dotted(path: Iterable[Any]) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with a local ``$ref`` ("#/$defs/name") merged in (its own keys take precedence)."""
    ref = schema.get("$ref")
    if not ref:
        return schema
    target: Any = root
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return {**_resolve(target, root), **{k: v for k, v in schema.items() if k != "$ref"}}


def _fill_defaults(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> None:
    """Insert schema defaults for missing keys, recursing into objects (and their defaults)."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if not isinstance(instance, dict) or schema.get("type") not in (None, "object"):
        return
    for key, sub in schema.get("properties", {}).items():
        sub = _resolve(sub, root)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(value, extra, root)


def _describe(error: jsonschema.ValidationError) -> str:
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{where}." if error.absolute_path else ""
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        hint = f" (known keys here: {', '.join(allowed)})" if allowed else ""
        return f"unknown config key {names}{hint}"
    if error.validator == "required":
        return f"config key '{where}': {error.message}"
    return f"config key '{where}': {error.message}"


def system_names(config: MutableMapping[str, Any]) -> list[str]:
    return list(config.get("systems", []))


def _check_semantics(config: MutableMapping[str, Any]) -> list[str]:
    # OpenMM: imported here so that `import boltzflow.config`, which every snakemake call and every
    # script makes, does not load it when no config is checked.
    from boltzflow.systems import BUILTIN_SYSTEMS, get_spec

    problems: list[str] = []
    custom = config.get("peptides", {})
    for i, name in enumerate(config["systems"]):
        if name not in BUILTIN_SYSTEMS and name not in custom:
            problems.append(
                f"config key 'systems[{i}]': unknown system {name!r}; built-in systems are "
                f"{sorted(BUILTIN_SYSTEMS)}, or define it under 'peptides'"
            )
    for name in custom:
        if name in BUILTIN_SYSTEMS:
            problems.append(f"config key 'peptides.{name}': {name!r} is a built-in system name")
    validation = config["flows"]["validation"]
    if validation["keep_best"] and not validation["frames"]:
        problems.append("config key 'flows.validation.keep_best': needs flows.validation.frames > 0 "
                        "(the best weights are chosen on those frames)")
    md = config["md"]
    if md["source"] == "file":
        for name in config["systems"]:
            if name not in md["files"]:
                problems.append(
                    f"config key 'md.files.{name}': md.source is 'file' but no frames are given "
                    f"for system {name!r}"
                )
    for name, spec in md["files"].items():
        for key in ("frames", "topology"):
            if not Path(spec[key]).exists():
                problems.append(f"config key 'md.files.{name}.{key}': file {spec[key]!r} not found")
        if str(spec["frames"]).endswith(".npy") and "units" not in spec:
            problems.append(
                f"config key 'md.files.{name}.units': required for .npy frames (nm or angstrom)"
            )
    if md["source"] == "simulate" and md["engine"] == "torch":

        for name in config["systems"]:
            try:
                temperature = get_spec(name, **config["peptides"].get(name, {})).temperature
                torch_md_settings(md, temperature)
            except KeyError:
                continue  # an unknown system is reported above
            except (TypeError, ValueError) as error:
                problems.append(f"config key 'md.torch' (system {name}): {error}")
        if md["torch"]["jobs"] > md["replicas"]:
            problems.append(f"config key 'md.torch.jobs': {md['torch']['jobs']} jobs for only "
                            f"{md['replicas']} replicas (ladders)")
    if md["save_interval_ps"] > md["length_ps"]:
        problems.append("config key 'md.save_interval_ps': longer than md.length_ps")
    if md["save_interval_ps"] * 1000 < md["timestep_fs"] - 1e-9:
        problems.append("config key 'md.save_interval_ps': shorter than one time step")
    split = config["split"]
    total = split["train"] + split["val"] + split["test"]
    if abs(total - 1.0) > 1e-9:
        problems.append(f"config key 'split': train + val + test must be 1, got {total:g}")
    flows = config["flows"]
    for i, name in enumerate(flows["systems"] or []):
        if name not in config["systems"]:
            problems.append(f"config key 'flows.systems[{i}]': {name!r} is not in 'systems' (no data for it)")
    for where, train in (("flows.train", flows["train"]), ("couplings.cnf.train", config["couplings"]["cnf"]["train"])):
        if train["checkpoint_every"] % train["history_every"]:
            problems.append(f"config key '{where}.checkpoint_every': must be a multiple of history_every "
                            f"({train['history_every']})")
    bench = config["benchmark"]["md_system"]
    if bench not in BUILTIN_SYSTEMS and bench not in custom:
        problems.append(f"config key 'benchmark.md_system': unknown system {bench!r}")
    for i, name in enumerate(config["benchmark"]["energy_systems"]):
        if name not in BUILTIN_SYSTEMS:
            problems.append(
                f"config key 'benchmark.energy_systems[{i}]': {name!r} is not a built-in system "
                f"({sorted(BUILTIN_SYSTEMS)})"
            )
    problems += [f"config key '{p.split(':', 1)[0]}':{p.split(':', 1)[1]}" for p in check_shootout(config["shootout"])]
    reference = config["reference"]["targets"]
    if reference:

        known = target_names()
        for i, name in enumerate(reference):
            if name not in known:
                problems.append(
                    f"config key 'reference.targets[{i}]': unknown target {name!r}; known: {known}"
                )
    return problems


def validate_config(
    config: MutableMapping[str, Any], schema: str | Path | dict[str, Any] = DEFAULT_SCHEMA
) -> MutableMapping[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises :class:`ConfigError` listing every problem found, each naming its key.
    """
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    if not isinstance(config, MutableMapping):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}")
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe(e) for e in errors))
    _fill_defaults(config, schema)
    # Defaults may only add keys the schema allows; re-check to be safe.
    errors = list(validator.iter_errors(config))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe(e) for e in errors))
    problems = _check_semantics(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return config


def validate_section(config: MutableMapping[str, Any], section: str,
                     schema: str | Path | dict[str, Any] = DEFAULT_SCHEMA) -> dict[str, Any]:
    """Validate one top-level section of ``config`` alone (defaults filled) and return it.

    For tools that use one stage only (``python -m boltzflow.ebm.run``): the other sections and
    the checks across them, some of which need OpenMM, are left out."""
    if not isinstance(schema, dict):
        schema = load_schema(schema)
    sub = {"$defs": schema.get("$defs", {}), "type": "object",
           "properties": {section: schema["properties"][section]}}
    instance = {section: copy.deepcopy(config.get(section, {}))}
    validator = jsonschema.Draft202012Validator(sub)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(_describe(e) for e in errors))
    _fill_defaults(instance, sub)
    return instance[section]


def _merge(base: dict, update: Any) -> dict:
    for key, value in (update or {}).items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def layered_section(configfiles: Iterable[str | Path], section: str, base: str | Path | None = DEFAULT_CONFIG,
                    schema: str | Path | None = None) -> dict[str, Any]:
    """The validated ``section`` of ``base`` with ``configfiles`` layered on top (later files win,
    key by key, as with ``snakemake --configfile``); raises ``ConfigError`` naming the key."""
    config: dict[str, Any] = {}
    for path in ([base] if base else []) + list(configfiles):
        with open(path) as handle:
            _merge(config, yaml.safe_load(handle))
    return validate_section(config, section, schema or DEFAULT_SCHEMA)
