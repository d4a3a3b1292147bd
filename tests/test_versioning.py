"""DVC snapshots of the store with the real git and dvc: version, push, restore byte for byte."""

from __future__ import annotations

import configparser
import filecmp
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from predmaint.ingest.runner import run_ingest
from predmaint.ingest.sources import SimulatorSource
from predmaint.ingest.store import ReadingStore
from predmaint.simulator import SimulationSpec
from predmaint.versioning import VersioningError, _ensure_repo, pull, remote_config, snapshot

pytestmark = pytest.mark.integration
PREDMAINT = str(Path(sys.executable).parent / "predmaint")


def ingest_simulated(root: Path, steps: int) -> None:
    with ReadingStore(root) as store:
        run_ingest(SimulatorSource(SimulationSpec(machines=3, steps=steps, seed=4)), store, threading.Event())


def same_tree(a: Path, b: Path) -> bool:
    compared = filecmp.dircmp(a, b)
    if compared.left_only or compared.right_only or compared.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, compared.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in compared.common_dirs)


@pytest.mark.slow
def test_snapshot_then_pull_an_older_version_round_trips_byte_for_byte(tmp_path):
    root, remote = tmp_path / "store", remote_config(str(tmp_path / "remote"))
    ingest_simulated(root, 100)
    first = snapshot(root, remote)
    kept = tmp_path / "v1-copy"
    shutil.copytree(root / "readings", kept)
    assert first.changed and first.readings == 300 and first.dvc_md5.endswith(".dir")

    ingest_simulated(root, 250)  # more data: compaction rewrites the files
    second = snapshot(root, remote)
    assert second.changed and second.commit != first.commit and second.readings == 750
    assert not same_tree(root / "readings", kept)

    again = snapshot(root, remote)  # nothing new: same version, no empty commit
    assert (again.commit, again.changed) == (second.commit, False)

    shutil.rmtree(root / ".dvc" / "cache")  # restore from the remote, not from the local cache
    restored = pull(root, first.commit, tmp_path / "restored")
    assert restored["dvc_md5"] == first.dvc_md5
    assert same_tree(tmp_path / "restored", kept)
    log = subprocess.run(
        ["git", "-C", str(root), "log", "--format=%s"], capture_output=True, text=True
    ).stdout
    assert log.splitlines() == [
        f"snapshot: 750 readings of 3 machines ({second.dvc_md5})",
        f"snapshot: 300 readings of 3 machines ({first.dvc_md5})",
    ]
    status = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True
    ).stdout
    assert status == ""  # dead letters and ingestion state stay out of git


@pytest.mark.slow
def test_cli_snapshot_and_pull(tmp_path):
    root = tmp_path / "store"
    ingest_simulated(root, 20)
    env = {**os.environ, "PREDMAINT_DATA__REMOTE": str(tmp_path / "remote")}
    made = subprocess.run(
        [PREDMAINT, "snapshot", "--store", str(root)], capture_output=True, text=True, env=env
    )
    assert made.returncode == 0, made.stderr
    version = json.loads(made.stdout)
    assert (
        version["readings"] == 60
        and version["data_version"] == f"{version['commit'][:12]}:{version['dvc_md5']}"
    )
    out = tmp_path / "out"
    got = subprocess.run(
        [PREDMAINT, "pull", "--store", str(root), "--rev", version["commit"], "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert got.returncode == 0, got.stderr
    assert same_tree(out, root / "readings")
    bad = subprocess.run(
        [PREDMAINT, "pull", "--store", str(root), "--rev", "no-such-rev", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (
        bad.returncode == 1
        and "'no-such-rev' is not a snapshot" in bad.stderr
        and bad.stderr.count("\n") == 1
    )


def test_snapshot_while_ingestion_holds_the_store(tmp_path):
    root = tmp_path / "store"
    ingest_simulated(root, 10)
    with ReadingStore(root):  # a running ingestion
        version = snapshot(root, remote_config(str(tmp_path / "remote")))
    assert version.readings == 30


def test_pull_refusals(tmp_path):
    root = tmp_path / "store"
    ingest_simulated(root, 10)
    with pytest.raises(VersioningError, match="no snapshots yet"):
        pull(root, "HEAD", tmp_path / "out")
    snapshot(root, remote_config(str(tmp_path / "remote")))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(VersioningError, match="not empty"):
        pull(root, "HEAD", tmp_path / "busy")
    with pytest.raises(VersioningError, match="not a snapshot"):
        pull(root, "v9", tmp_path / "out")


def test_snapshot_of_something_that_is_not_a_store(tmp_path):
    with pytest.raises(VersioningError, match="not a predmaint store"):
        snapshot(tmp_path, remote_config(str(tmp_path / "remote")))


@pytest.mark.slow
def test_a_failed_push_names_dvcs_reason(tmp_path):
    ingest_simulated(tmp_path / "store", 5)
    blocked = tmp_path / "remote"
    blocked.write_text("a file where the remote directory should be")
    with pytest.raises(VersioningError, match=r"dvc push failed: ERROR: .*") as raised:
        snapshot(tmp_path / "store", remote_config(str(blocked)))
    assert "Having any troubles" not in str(raised.value)


# --- remote configuration (Google Drive and S3 cannot be reached here; their config can) -------
def test_local_remote_is_an_absolute_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert remote_config(".predmaint/dvc-remote").url == str(tmp_path / ".predmaint" / "dvc-remote")


def test_gdrive_remote_uses_a_service_account_kept_out_of_git(tmp_path):
    with pytest.raises(VersioningError, match="needs a service account"):
        remote_config("gdrive://1AbC")
    config = remote_config("gdrive://1AbC", gdrive_service_account_json=tmp_path / "sa.json")
    assert config.options == {"gdrive_use_service_account": "true"}
    assert config.local_options == {"gdrive_service_account_json_file_path": str(tmp_path / "sa.json")}
    (tmp_path / "store" / "readings").mkdir(parents=True)
    _ensure_repo(tmp_path / "store", config)  # the real dvc writes the configuration
    committed = configparser.ConfigParser()
    committed.read(tmp_path / "store" / ".dvc" / "config")
    local = configparser.ConfigParser()
    local.read(tmp_path / "store" / ".dvc" / "config.local")
    assert dict(committed["'remote \"storage\"'"]) == {
        "url": "gdrive://1AbC",
        "gdrive_use_service_account": "true",
    }
    assert dict(local["'remote \"storage\"'"]) == {
        "gdrive_service_account_json_file_path": str(tmp_path / "sa.json")
    }
    assert committed["core"]["remote"] == "storage"
    ignored = subprocess.run(
        ["git", "-C", str(tmp_path / "store"), "check-ignore", ".dvc/config.local"],
        capture_output=True,
        text=True,
    )
    assert ignored.returncode == 0  # dvc keeps config.local out of git


def test_s3_remote_with_a_custom_endpoint(tmp_path):
    config = remote_config(
        "s3://bucket/predmaint", s3_endpoint_url="http://127.0.0.1:9000", s3_profile="minio"
    )
    assert (config.url, config.options, config.local_options) == (
        "s3://bucket/predmaint",
        {"endpointurl": "http://127.0.0.1:9000"},
        {"profile": "minio"},
    )
    (tmp_path / "store" / "readings").mkdir(parents=True)
    _ensure_repo(tmp_path / "store", config)
    text = (tmp_path / "store" / ".dvc" / "config").read_text()
    assert "url = s3://bucket/predmaint" in text and "endpointurl = http://127.0.0.1:9000" in text


@pytest.mark.parametrize("url", ["ftp://host/path", "https://example.invalid/x"])
def test_unsupported_remotes_are_named(url):
    with pytest.raises(VersioningError, match="use a directory, gdrive://FOLDER_ID or s3://BUCKET/PATH"):
        remote_config(url)
