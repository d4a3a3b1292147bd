"""Settings come from params.yaml and PREDMAINT_* variables, with clear errors for bad values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from predmaint.config import ConfigError, Settings, load_settings

REPO = Path(__file__).parents[1]


def test_defaults_without_a_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.state_dir == Path(".predmaint")
    assert settings.simulator.machines == 10
    assert settings.simulator.start == datetime(2026, 1, 1, tzinfo=UTC)


def test_params_file_then_environment_then_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("simulator:\n  machines: 7\n  seed: 3\n")
    assert load_settings().simulator.machines == 7
    monkeypatch.setenv("PREDMAINT_SIMULATOR__MACHINES", "9")
    settings = load_settings()
    assert (settings.simulator.machines, settings.simulator.seed) == (9, 3)  # env wins, file fills in
    assert isinstance(settings.simulator.machines, int)
    assert load_settings(state_dir="/tmp/elsewhere").state_dir == Path("/tmp/elsewhere")


def test_params_file_named_by_environment(tmp_path, monkeypatch):
    other = tmp_path / "other.yaml"
    other.write_text("state_dir: /srv/predmaint\n")
    monkeypatch.setenv("PREDMAINT_PARAMS", str(other))
    assert load_settings().state_dir == Path("/srv/predmaint")


def test_repository_params_file_is_valid_and_complete(monkeypatch):
    monkeypatch.chdir(REPO)
    settings = load_settings()
    written = yaml.safe_load((REPO / "params.yaml").read_text())
    assert settings.simulator.seed == written["simulator"]["seed"]
    # Every setting has a default in one place; the file names each section the code knows.
    assert set(written) <= set(Settings.model_fields)


@pytest.mark.parametrize(
    "content, message",
    [
        ("simulator:\n  machines: 0\n", "simulator.machines: Input should be greater than or equal to 1"),
        ("simulator:\n  machines: many\n", "simulator.machines"),
        ("simulator:\n  colour: red\n", "simulator.colour: Extra inputs are not permitted"),
        ("simualtor:\n  machines: 3\n", "simualtor"),
        ("simulator:\n  start: '2026-01-01T00:00:00'\n", "UTC offset"),
        ("- a\n- b\n", "must hold a mapping"),
        ("simulator: [\n", "not valid YAML"),
    ],
)
def test_bad_params_files_name_the_key(tmp_path, monkeypatch, content, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_environment_value_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREDMAINT_SIMULATOR__STEPS", "-3")
    with pytest.raises(ConfigError, match="simulator.steps"):
        load_settings()


def test_missing_params_file_named_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PREDMAINT_PARAMS", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="PREDMAINT_PARAMS=.*absent.yaml does not exist"):
        load_settings()


def test_loading_has_no_side_effects(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    load_settings()
    assert list(tmp_path.iterdir()) == []
