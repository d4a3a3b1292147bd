"""The images' Python base and their build cache: `make images` works with no registry, and twice fast.

Where the pinned python image cannot be pulled (no registry here), `docker/base-image.sh` builds
the base from Debian bookworm packages, once per recipe: these tests check its layout against the
python image's and that unchanged inputs rebuild nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from containers import REPO, docker

pytestmark = [pytest.mark.slow, pytest.mark.integration]
SCRIPT = REPO / "docker" / "base-image.sh"
DEBIAN_BASE = "predmaint/python:3.11-bookworm"


def _resolve() -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "resolve"], capture_output=True, text=True, timeout=900, cwd=REPO)


def test_the_base_resolves_without_rebuilding_an_unchanged_recipe():
    done = _resolve()
    assert done.returncode == 0, done.stderr
    base = done.stdout.strip()
    if base != DEBIAN_BASE:  # a machine that can pull the pinned python image uses it
        assert base.startswith("python:3.11."), base
        return
    assert "is current" in done.stderr and "debootstrap" not in done.stderr, done.stderr
    labels = json.loads(docker("image", "inspect", base).stdout)[0]["Config"]["Labels"]
    assert labels["org.predmaint.base-recipe"] == hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:16]


@pytest.fixture(scope="module")
def fresh_base():
    """The Debian base built now, from nothing, under a throw-away tag (as on a fresh machine)."""
    tag = f"predmaint/python:test-{os.getpid()}"
    before = set(Path("/var/tmp").glob("predmaint-base.*"))
    done = subprocess.run(
        [str(SCRIPT), "build"],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BASE_IMAGE_TAG": tag},
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        assert set(Path("/var/tmp").glob("predmaint-base.*")) == before  # the root tree is removed
        yield tag
    finally:
        docker("rmi", "--force", tag, check=False)


def test_the_debian_base_is_laid_out_like_the_python_image(fresh_base):
    base = fresh_base
    probe = (
        "import os, ssl, sys, sysconfig; "
        "print(sys.version_info[:2] == (3, 11), os.path.realpath('/usr/local/bin/python') == "
        "os.path.realpath(sys.executable), "
        "os.path.exists(sysconfig.get_path('stdlib') + '/EXTERNALLY-MANAGED'), "
        "ssl.get_default_verify_paths().openssl_cafile is not None)"
    )
    done = docker("run", "--rm", "--network", "none", base, "python", "-c", probe)
    assert done.stdout.split() == ["True", "True", "False", "True"], done.stdout
    for command in (["python3.11", "-m", "venv", "/tmp/venv"], ["pip", "--version"]):
        assert docker("run", "--rm", "--network", "none", base, *command, check=False).returncode == 0, (
            command
        )


def test_a_second_make_images_reuses_every_layer():
    done = subprocess.run(
        ["make", "--no-print-directory", "images"], capture_output=True, text=True, timeout=900, cwd=REPO
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("Successfully tagged") == 6  # three images and their builder stages
    assert "Running in" not in done.stdout, (
        "a step ran again: its inputs changed since the last `make images` (make test builds first) "
        "or the cache is lost"
    )
