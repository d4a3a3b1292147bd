"""The container images, checked without a Docker engine.

What each Dockerfile builds from, who it runs as and what it copies, and the Makefile targets
that build and push the images. No engine runs here, so the Dockerfiles are read by a small
parser (continuation lines joined, comments dropped, global ARG defaults substituted into FROM),
and `make images` / `make push` run against a missing and a stub `docker` must stop with a
clear message.
"""

from __future__ import annotations

import json
import re
import shlex
import stat
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVING = REPO / "serving" / "Dockerfile"
PIPELINE = REPO / "docker" / "pipeline.Dockerfile"
MLFLOW = REPO / "docker" / "mlflow.Dockerfile"
DOCKERFILES = [SERVING, PIPELINE, MLFLOW]
APP_DOCKERFILES = [SERVING, PIPELINE]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# An exact release of the base: major.minor.patch (python:3.11.14-slim-bookworm), not 3.11 or latest.
EXACT_TAG = re.compile(r"\d+\.\d+\.\d+")


@dataclass
class Stage:
    """One FROM … stage: its base image, name and instructions as (keyword, argument) pairs."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        """Arguments of every instruction `keyword` (upper case) in this stage."""
        return [argument for name, argument in self.instructions if name == keyword]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, argument) pairs of a Dockerfile: comments dropped, continuation lines joined."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, argument = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), argument.strip()))
        pending = ""
    assert not pending, f"{path}: the last instruction ends with a line continuation"
    return instructions


def parse_dockerfile(path: Path) -> list[Stage]:
    """The stages of a Dockerfile, with global ARG defaults substituted into FROM."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, argument in _instructions(path):
        if keyword == "ARG" and not stages:
            name, _, default = argument.partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            words = argument.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{path}: {keyword} before the first FROM"
            stages[-1].instructions.append((keyword, argument))
    return stages


def _exec_form(argument: str) -> list[str]:
    """The JSON (exec) form of CMD/ENTRYPOINT; the shell form would not get signals as PID 1."""
    assert argument.startswith("["), f"shell form {argument!r}: use the exec form [...] so SIGTERM reaches it"
    return json.loads(argument)


def _copy_sources(stage: Stage) -> list[str]:
    """Sources of every COPY/ADD of a stage that come from the build context (not --from)."""
    sources = []
    for keyword in ("COPY", "ADD"):
        for argument in stage.arguments(keyword):
            words = shlex.split(argument)
            if any(word.startswith("--from=") for word in words):
                continue
            sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_base_image_is_pinned_to_an_exact_release(dockerfile: Path) -> None:
    stages = parse_dockerfile(dockerfile)
    names = {stage.name for stage in stages}
    for stage in stages:
        if stage.base in names:
            continue  # built on an earlier stage of the same file
        repository, _, tag = stage.base.partition("@")[0].rpartition(":")
        assert repository and tag, f"{dockerfile.name}: base {stage.base!r} has no tag"
        assert tag != "latest" and EXACT_TAG.search(tag), (
            f"{dockerfile.name}: base {stage.base!r} is not an exact release (e.g. 3.11.14-slim-bookworm)"
        )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_are_multi_stage_and_the_final_stage_runs_as_a_numeric_non_root_user(dockerfile: Path) -> None:
    stages = parse_dockerfile(dockerfile)
    assert len(stages) >= 2, f"{dockerfile.name}: build tools should stay in a builder stage"
    users = stages[-1].arguments("USER")
    assert users, f"{dockerfile.name}: the final stage sets no USER, so it runs as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so Kubernetes' runAsNonRoot can verify it without the image's /etc/passwd.
    assert uid.isdigit() and int(uid) > 0, (
        f"{dockerfile.name}: USER {users[-1]!r} is not a numeric non-root uid"
    )
    assert not gid or (gid.isdigit() and int(gid) > 0), (
        f"{dockerfile.name}: USER group {gid!r} is not numeric"
    )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_copy_no_secrets_and_bake_in_no_credentials(dockerfile: Path) -> None:
    secret_file = re.compile(r"(^|/)(\.env(\..*)?|.*\.pem|.*\.key|id_rsa.*|\.netrc|\.pypirc|credentials.*)$")
    secret_name = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
    for stage in parse_dockerfile(dockerfile):
        for source in _copy_sources(stage):
            assert source not in (".", "./"), (
                f"{dockerfile.name}: COPY . copies the whole context; name the paths"
            )
            assert not secret_file.search(source), f"{dockerfile.name}: copies {source!r}, a secret file"
            assert not source.startswith(("http://", "https://")), (
                f"{dockerfile.name}: ADD from a URL is unpinned"
            )
        for keyword in ("ENV", "ARG"):
            for argument in stage.arguments(keyword):
                for name in re.findall(r"(\w+)=", argument) or [argument.split()[0]]:
                    assert not secret_name.search(name), (
                        f"{dockerfile.name}: {keyword} {name} bakes a credential in"
                    )


def test_dockerignore_keeps_environments_state_and_history_out_and_lets_in_what_is_copied() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore should start from an empty context ('*') and name what enters"
    for excluded in (".venv/", ".git/", ".predmaint/", ".tools/", "**/__pycache__/", "**/.env"):
        assert excluded in lines, f".dockerignore does not exclude {excluded}"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for dockerfile in DOCKERFILES:
        for stage in parse_dockerfile(dockerfile):
            for source in _copy_sources(stage):
                top = source.rstrip("/").split("/")[0]
                assert top in allowed, f"{dockerfile.name} copies {source}, which .dockerignore keeps out"


@pytest.mark.parametrize("dockerfile", APP_DOCKERFILES, ids=lambda path: path.name)
def test_app_images_install_the_locked_runtime_dependencies_and_every_package_of_the_wheel(
    dockerfile: Path,
) -> None:
    builder, final = parse_dockerfile(dockerfile)[0], parse_dockerfile(dockerfile)[-1]
    runs = builder.arguments("RUN")
    if dockerfile == SERVING:  # the serving subset, hash-locked (tests/test_serving_image.py)
        assert any("--require-hashes -r serving-requirements.txt" in run for run in runs)
        assert any("--no-deps ." in run for run in runs), "the project goes in without its dependencies"
    else:
        syncs = [run for run in runs if "uv sync" in run]
        assert syncs and all("--locked" in run and "--no-dev" in run for run in syncs), (
            f"{dockerfile.name}: install with `uv sync --locked --no-dev` (uv.lock, no test tools)"
        )
        assert any("--no-install-project" in run for run in syncs), (
            f"{dockerfile.name}: dependencies should get their own cached layer (--no-install-project)"
        )
    copied = {source.rstrip("/") for source in _copy_sources(builder)}
    for package in PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]:
        assert package.split("/")[0] in copied, (
            f"{dockerfile.name}: the wheel's package {package} is not copied"
        )
    assert any("--from=builder /opt/venv" in copy for copy in final.arguments("COPY"))
    assert any("PATH=/opt/venv/bin:" in env for env in final.arguments("ENV")), (
        f"{dockerfile.name}: the venv must come first on PATH (KFP runs `python3 -m kfp…`)"
    )


def test_uv_in_the_images_is_the_makefiles_uv() -> None:
    makefile_uv = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)[1]
    for dockerfile in APP_DOCKERFILES:
        pinned = [
            argument.partition("=")[2]
            for argument in parse_dockerfile(dockerfile)[0].arguments("ARG")
            if argument.startswith("UV_VERSION=")
        ]
        assert pinned == [makefile_uv], f"{dockerfile.name}: uv {pinned} but the Makefile pins {makefile_uv}"


def test_serving_image_runs_predmaint_serve_on_port_8000() -> None:
    final = parse_dockerfile(SERVING)[-1]
    assert final.arguments("EXPOSE") == ["8000"]
    command = _exec_form(final.arguments("ENTRYPOINT")[-1]) + _exec_form(final.arguments("CMD")[-1])
    assert command == ["predmaint", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_pipeline_image_has_git_and_dvcs_s3_remote_and_no_entrypoint_for_kfp_to_fight() -> None:
    builder, final = parse_dockerfile(PIPELINE)[0], parse_dockerfile(PIPELINE)[-1]
    assert any("apt-get install" in run and re.search(r"\bgit\b", run) for run in final.arguments("RUN"))
    assert all("--extra s3" in run for run in builder.arguments("RUN") if "uv sync" in run)
    # KFP sets the container command (sh -ec … python3 -m kfp.dsl.executor_main); an ENTRYPOINT
    # would be prepended to it.
    assert not final.arguments("ENTRYPOINT")
    assert "predmaint/pipeline:" in (REPO / "components" / "__init__.py").read_text()


def test_mlflow_image_installs_the_locked_mlflow_with_postgres_s3_and_auth_support() -> None:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    locked = {package["name"]: package["version"] for package in lock["package"]}
    wanted = (REPO / "docker" / "mlflow-requirements.in").read_text()
    assert f"mlflow[auth]=={locked['mlflow']}\n" in wanted, (
        f"mlflow-requirements.in should pin uv.lock's mlflow {locked['mlflow']}"
    )
    requirements = (REPO / "docker" / "mlflow-requirements.txt").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", requirements, re.MULTILINE))
    assert pins.get("mlflow") == locked["mlflow"], (
        "mlflow-requirements.txt is stale: re-lock it (command in the .in file)"
    )
    assert {"psycopg2-binary", "boto3", "flask-wtf"} <= pins.keys()  # flask-wtf: --app-name basic-auth
    blocks = re.split(r"\n(?=[a-z0-9])", requirements.strip())
    unhashed = [
        block.split()[0] for block in blocks if not block.startswith("#") and "--hash=sha256:" not in block
    ]
    assert not unhashed, f"requirements without hashes: {unhashed}"
    install = " ".join(parse_dockerfile(MLFLOW)[0].arguments("RUN"))
    assert "--require-hashes" in install and "--only-binary=:all:" in install


def _make(*args: str, path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": path},
    )


@pytest.fixture
def system_path() -> str:
    """A PATH with make and a shell but no docker, whatever this machine has installed."""
    return "/usr/bin:/bin"


def test_make_images_stops_with_a_clear_message_without_docker(tmp_path: Path, system_path: str) -> None:
    result = _make("images", f"DOCKER={tmp_path / 'docker'}", path=system_path)
    assert result.returncode != 0
    assert "not found: install Docker" in result.stdout + result.stderr


def test_make_images_and_push_stop_with_a_clear_message_without_an_engine(
    tmp_path: Path, system_path: str
) -> None:
    # A docker CLI whose engine is unreachable, as on this machine: every call fails.
    stub = tmp_path / "docker"
    stub.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    for target in ("images", "push"):
        result = _make(target, f"DOCKER={stub}", "REGISTRY=registry.example.com/team", path=system_path)
        assert result.returncode != 0
        assert "cannot reach a Docker engine" in result.stdout + result.stderr, target


def test_make_push_asks_for_a_registry(system_path: str) -> None:
    result = _make("push", path=system_path)
    assert result.returncode != 0
    assert "set REGISTRY" in result.stdout + result.stderr


def test_make_images_tags_with_the_project_version_and_optional_registry(system_path: str) -> None:
    plain = _make("-n", "images", path=system_path).stdout
    prefixed = _make("-n", "push", "REGISTRY=registry.example.com/team/", path=system_path).stdout
    build = 'build --network host --build-arg PYTHON_IMAGE="$base"'
    assert f"{build} -f $dockerfile -t predmaint/$image:{VERSION} ." in plain
    assert f"{build} --target builder -f $dockerfile -t predmaint/$image-builder:{VERSION} ." in plain
    for image, dockerfile in (("serving", SERVING), ("pipeline", PIPELINE), ("mlflow", MLFLOW)):
        relative = dockerfile.relative_to(REPO)
        assert f"{image}:{relative}" in plain  # the loop's (image, Dockerfile) pairs
        assert f"push registry.example.com/team/predmaint/{image}:{VERSION}" in prefixed
