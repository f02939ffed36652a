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
