import copy
from pathlib import Path

import pytest
import yaml
from boltzflow.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "config").rglob("*.yaml"))


def load(name="config.yaml"):
    return yaml.safe_load((ROOT / "config" / name).read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_validates(path):
    validate_config(yaml.safe_load(path.read_text()))


def test_defaults_are_filled():
    config = validate_config({})
    assert config["experiment"] == "default" and config["systems"] == ["al2"]
    assert config["md"]["timestep_fs"] == 1.0 and config["md"]["platform"] == "auto"
    assert config["split"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    custom = validate_config({"systems": ["gly"], "peptides": {"gly": {
        "sequence": "ACE-GLY-NME", "forcefield": "amber99sbildn", "solvent": "vacuum", "temperature": 300}}})
    assert custom["peptides"]["gly"]["nonbonded"] == "NoCutoff"


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(bogus=1), "'bogus'"),
    (lambda c: c["md"].update(lenght_ps=5), "'md.lenght_ps'"),
    (lambda c: c["md"].update(length_ps="long"), "'md.length_ps'"),
    (lambda c: c["md"].update(length_ps=-5), "'md.length_ps'"),
    (lambda c: c["md"].update(replicas=1.5), "'md.replicas'"),
    (lambda c: c["md"].update(platform="GPU"), "'md.platform'"),
    (lambda c: c.update(systems=["al2", "al9"]), "'systems[1]'"),
    (lambda c: c.update(split={"train": 0.9, "val": 0.1, "test": 0.1}), "'split'"),
    (lambda c: c.update(experiment="a b/c"), "'experiment'"),
    (lambda c: c["md"].update(source="file"), "'md.files.al2'"),
    (lambda c: c.update(peptides={"x": {"sequence": "ALA"}}), "'peptides.x'"),
    (lambda c: c.update(benchmark={"energy_systems": ["al2", "lj13"]}), "'benchmark.energy_systems[1]'"),
    (lambda c: c["md"].update(engine="gromacs"), "'md.engine'"),
    (lambda c: c["md"].update(torch={"n_temperatures": 0}), "'md.torch.n_temperatures'"),
    (lambda c: c["md"].update(torch={"exchange_interval_ps": 0.001}), "'md.torch'"),
    (lambda c: c["md"].update(torch={"max_temperature_K": 250}), "'md.torch'"),
    (lambda c: c["md"].update(replicas=2, torch={"jobs": 3}), "'md.torch.jobs'"),
    (lambda c: c["flows"].update(validation={"frames": 0, "keep_best": True}), "'flows.validation.keep_best'"),
])
def test_bad_config_names_the_key(mutate, key):
    config = copy.deepcopy(load())
    mutate(config)
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    assert key in str(err.value)


def test_user_frames_need_existing_files_and_units(tmp_path):
    frames, pdb = tmp_path / "f.npy", tmp_path / "t.pdb"
    config = {"md": {"source": "file", "files": {"al2": {"frames": str(frames), "topology": str(pdb)}}}}
    with pytest.raises(ConfigError, match=r"'md.files.al2.frames': file .*f\.npy.* not found"):
        validate_config(copy.deepcopy(config))
    frames.write_bytes(b"")
    pdb.write_text("")
    with pytest.raises(ConfigError, match=r"'md.files.al2.units': required for .npy"):
        validate_config(copy.deepcopy(config))
    config["md"]["files"]["al2"]["units"] = "angstrom"
    validate_config(config)


def test_sgds_settings_schema_lists_every_setting_and_no_other():
    """The schema's sgds settings and SGDSSettings name the same keys: a setting added to one and
    not the other would be rejected by the schema or unknown to the trainer."""
    from dataclasses import fields

    from boltzflow.config import load_schema
    from boltzflow.sgds import SGDSSettings

    schema_keys = set(load_schema()["$defs"]["sgds_settings"]["properties"])
    settings_keys = {f.name for f in fields(SGDSSettings)} - {"method", "seed"}
    assert schema_keys == settings_keys, (schema_keys ^ settings_keys)


# ---- the install: what the README's commands need is declared in pyproject.toml ----

#: Modules `snakemake --report` imports (snakemake/report/html_reporter and its data/ helpers;
#: pygments only when the report is written, so a missing one fails late).
REPORT_MODULES = ("pygments", "jinja2", "docutils", "humanfriendly", "yte", "requests", "yaml")


def _declared_distributions() -> set[str]:
    """Distributions pyproject.toml's dependencies pull in, following each one's own requirements
    (with the extras asked for) through the installed metadata."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return name.lower().replace("_", "-").replace(".", "-")

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    todo = [(Requirement(r), ("",)) for r in project["dependencies"]]
    seen: dict[str, set[str]] = {}
    while todo:
        req, parent_extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in parent_extras):
            continue
        name = norm(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        try:
            requires = metadata.requires(req.name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"{req.name} is declared in pyproject.toml but not installed")
        todo += [(Requirement(r), ("", *sorted(extras))) for r in requires]
    return set(seen)


def _distribution_of(module: str) -> set[str]:
    from importlib import metadata

    return {d.lower().replace("_", "-").replace(".", "-")
            for d in metadata.packages_distributions().get(module.split(".")[0], [])}


def _third_party_imports() -> set[str]:
    """Top-level modules imported by the library and the rule scripts, standard library left out."""
    import ast
    import sys

    root = Path(__file__).parents[1] / "workflow"
    found = set()
    for path in [*root.joinpath("boltzflow").rglob("*.py"), *root.joinpath("scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    local = {"boltzflow", "_common"}
    return {m for m in found if m not in sys.stdlib_module_names and m not in local}


def test_report_needs_are_declared():
    """`snakemake --report report.html` after `pip install -e .`: pygments (and the rest of what the
    report imports) must come from pyproject.toml's dependencies, not from pytest's."""
    declared = _declared_distributions()
    missing = [m for m in REPORT_MODULES if not (_distribution_of(m) & declared)]
    assert not missing, f"snakemake --report imports {missing}, which pyproject.toml's dependencies do not bring"


def test_library_and_script_imports_are_declared():
    declared = _declared_distributions()
    missing = sorted(m for m in _third_party_imports() if not (_distribution_of(m) & declared))
    assert not missing, f"imported by workflow/ but not brought by pyproject.toml's dependencies: {missing}"
