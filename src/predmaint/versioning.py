"""Data versions of the sensor store with DVC: snapshot, push to a remote, pull any version.

The store directory is its own git + DVC repository: `readings/` is tracked by DVC
(`readings.dvc` committed to git), while the dead letters and ingestion state stay local. A data
version is the git commit of a snapshot together with the DVC hash of `readings/`. The remote
is a local directory by default; Google Drive and S3-compatible remotes are configured through
settings (see docs/data.md). Everything runs the real `git` and `dvc` command-line tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from predmaint.ingest.store import READINGS, ReadingStore, StoreError, store_commit_lock, store_stats

REMOTE_NAME = "storage"
_GITIGNORE = "# local to this machine: not versioned\n/_state/\n/dead_letter/\n"


class VersioningError(RuntimeError):
    """A snapshot or pull failed; the message names the step and what to do."""


@dataclass(frozen=True)
class RemoteConfig:
    """Where snapshots are pushed, as DVC sees it."""

    url: str
    options: dict[str, str]  # committed to .dvc/config (no secrets)
    local_options: dict[str, str]  # .dvc/config.local, never committed (credential paths)


def remote_config(
    url: str,
    *,
    gdrive_service_account_json: str | Path | None = None,
    s3_endpoint_url: str | None = None,
    s3_profile: str | None = None,
) -> RemoteConfig:
    """DVC remote settings for a local directory, a Google Drive folder or an S3 bucket.

    Raises:
        VersioningError: for a URL of an unsupported kind or missing credentials.
    """
    if url.startswith("gdrive://"):
        if not gdrive_service_account_json:
            raise VersioningError(
                "a gdrive:// remote needs a service account: set data.gdrive_service_account_json to the "
                "key file (Google blocks DVC's default OAuth app; see docs/data.md)"
            )
        return RemoteConfig(
            url,
            {"gdrive_use_service_account": "true"},
            {"gdrive_service_account_json_file_path": str(Path(gdrive_service_account_json).resolve())},
        )
    if url.startswith("s3://"):
        options = {"endpointurl": s3_endpoint_url} if s3_endpoint_url else {}
        return RemoteConfig(url, options, {"profile": s3_profile} if s3_profile else {})
    if "://" in url:
        raise VersioningError(f"remote {url!r}: use a directory, gdrive://FOLDER_ID or s3://BUCKET/PATH")
    return RemoteConfig(str(Path(url).resolve()), {}, {})


@dataclass(frozen=True)
class DataVersion:
    """One snapshot of the store."""

    commit: str
    dvc_md5: str
    readings: int
    machines: int
    remote: str
    changed: bool

    @property
    def data_version(self) -> str:
        """Short form used in tags and logs: <commit>:<dvc md5>."""
        return f"{self.commit[:12]}:{self.dvc_md5}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self) | {"data_version": self.data_version}


def _env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}


def _run(cmd: list[str], cwd: Path, step: str) -> str:
    try:
        result = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=3600)
    except FileNotFoundError:
        raise VersioningError(f"{step}: {cmd[0]} is not installed") from None
    if result.returncode != 0:
        detail = f"{result.stdout}\n{result.stderr}".strip().splitlines()
        message = next((line for line in reversed(detail) if line.strip().startswith("ERROR")), None)
        raise VersioningError(
            f"{step} failed: {(message or (detail[-1] if detail else 'no output')).strip()}"
        )
    return result.stdout


def _dvc(*args: str, cwd: Path, step: str) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd, step)


def _git(*args: str, cwd: Path, step: str) -> str:
    identity = []
    probe = subprocess.run(["git", "config", "user.email"], cwd=cwd, capture_output=True, text=True)
    if not probe.stdout.strip():  # snapshots must work on machines with no git identity (CI, pods)
        identity = ["-c", "user.name=predmaint", "-c", "user.email=predmaint@localhost"]
    return _run(["git", *identity, "-c", "commit.gpgsign=false", *args], cwd, step)


def _ensure_repo(root: Path, remote: RemoteConfig) -> None:
    if shutil.which("git") is None:
        raise VersioningError("git is not installed; snapshots are git commits")
    if not (root / ".git").exists():
        _git("init", "-q", cwd=root, step="git init")
    if not (root / ".dvc").exists():
        _dvc("init", "-q", cwd=root, step="dvc init")
        _dvc("config", "core.analytics", "false", cwd=root, step="dvc config")
    gitignore = root / ".gitignore"
    if not gitignore.exists() or "/_state/" not in gitignore.read_text():
        with open(gitignore, "a", encoding="utf-8") as handle:
            handle.write(_GITIGNORE)
    (root / ".dvc" / "config.local").unlink(missing_ok=True)  # only ever holds this remote's local options
    _dvc("remote", "add", "--default", "--force", REMOTE_NAME, remote.url, cwd=root, step="dvc remote add")
    for key, value in remote.options.items():
        _dvc("remote", "modify", REMOTE_NAME, key, value, cwd=root, step="dvc remote modify")
    for key, value in remote.local_options.items():
        _dvc("remote", "modify", "--local", REMOTE_NAME, key, value, cwd=root, step="dvc remote modify")


def _dvc_md5(root: Path, rev: str | None = None) -> str:
    text = (
        (root / f"{READINGS}.dvc").read_text()
        if rev is None
        else _git("show", f"{rev}:{READINGS}.dvc", cwd=root, step="git show")
    )
    return str(yaml.safe_load(text)["outs"][0]["md5"])


def snapshot(store: str | Path, remote: RemoteConfig) -> DataVersion:
    """Version the committed readings of `store` with DVC, commit to git and push to the remote."""
    root = Path(store).resolve()
    if not (root / READINGS).is_dir():
        raise VersioningError(
            f"{root} is not a predmaint store (no {READINGS}/ inside); ingest into it first"
        )
    writer: ReadingStore | None = None
    try:
        writer = ReadingStore(root).open()  # no ingestion running: finish any interrupted commit first
    except StoreError:
        writer = None  # ingestion is running; its commit lock below keeps the files still
    try:
        _ensure_repo(root, remote)
        with store_commit_lock(root):
            stats = store_stats(root)
            _dvc("add", READINGS, cwd=root, step="dvc add")
        _git(
            "add", f"{READINGS}.dvc", ".gitignore", ".dvc/config", ".dvc/.gitignore", cwd=root, step="git add"
        )
        changed = bool(
            _git("status", "--porcelain", "--untracked-files=no", cwd=root, step="git status").strip()
        )
        md5 = _dvc_md5(root)
        if changed:
            message = f"snapshot: {stats['readings']} readings of {stats['machines']} machines ({md5})"
            _git("commit", "-q", "-m", message, cwd=root, step="git commit")
        # Not -q: it hides DVC's ERROR line (the cause) but not its "Having any troubles?" footer.
        _dvc("push", "-r", REMOTE_NAME, cwd=root, step="dvc push")
        commit = _git("rev-parse", "HEAD", cwd=root, step="git rev-parse").strip()
    finally:
        if writer is not None:
            writer.close()
    return DataVersion(commit, md5, stats["readings"], stats["machines"], remote.url, changed)


def pull(store: str | Path, rev: str, out: str | Path, remote: RemoteConfig | None = None) -> dict[str, Any]:
    """Restore the readings of snapshot `rev` (a commit, tag or branch) from the remote into `out`.

    The remote recorded in that snapshot is used; `remote` adds machine-local options such as
    credential paths, which are never committed.
    """
    root = Path(store).resolve()
    if not (root / ".git").exists() or not (root / f"{READINGS}.dvc").exists():
        raise VersioningError(f"{root} has no snapshots yet; run `predmaint snapshot --store {store}` first")
    try:
        commit = _git(
            "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=root, step="git rev-parse"
        ).strip()
    except VersioningError:
        raise VersioningError(
            f"{rev!r} is not a snapshot of {root}; `git -C {root} log` lists them"
        ) from None
    md5 = _dvc_md5(root, commit)
    target = Path(out).resolve()
    if target.exists() and any(target.iterdir()):
        raise VersioningError(f"{target} exists and is not empty; choose a new --out directory")
    if target.exists():
        target.rmdir()
    target.parent.mkdir(parents=True, exist_ok=True)
    extra = [f"{key}={value}" for key, value in (remote.local_options if remote else {}).items()]
    _dvc(
        "get",
        str(root),
        READINGS,
        "--rev",
        commit,
        "-o",
        str(target),
        *(["--remote-config", *extra] if extra else []),
        cwd=target.parent,
        step="dvc get",
    )
    files = [p for p in target.rglob("*") if p.is_file()]
    return {"commit": commit, "dvc_md5": md5, "out": str(target), "files": len(files)}
