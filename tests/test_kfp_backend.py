"""The compiled pipeline against the protobuf definitions of the Kubeflow Pipelines release we pin.

The API server of release R parses the compiled YAML strictly with R's protos: an unknown field in
an executor's Kubernetes config fails every run. `tests/kfp_spec_check.py` does the same parsing
offline with the wheels `kfp-pipeline-spec==R` and `kfp-kubernetes==R` that `make kfp-spec`
unpacks into `.tools/kfp-spec/R/`, in a fresh interpreter, so R's protos never meet those of the
kfp SDK that this test process has imported.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
KFP = REPO / "manifests" / "kubeflow-pipelines"
CHECKER = REPO / "tests" / "kfp_spec_check.py"
PIPELINE = REPO / "pipelines" / "training" / "pipeline.yaml"
REQUIREMENTS = KFP / "spec-requirements.txt"


def _refs() -> dict[str, str]:
    """The release tag (`?ref=`) of each Kubeflow Pipelines kustomization."""
    refs = {}
    for part in ("cluster-scoped", "platform-agnostic"):
        (resource,) = yaml.safe_load((KFP / part / "kustomization.yaml").read_text())["resources"]
        refs[part] = resource.rpartition("?ref=")[2]
    return refs


RELEASE = _refs()["cluster-scoped"]
SPEC_DIR = REPO / ".tools" / "kfp-spec" / RELEASE


@pytest.fixture(scope="module")
def spec_dir() -> Path:
    """The unpacked protos of the pinned release; their absence fails (never skips) the tests."""
    if not (SPEC_DIR / "kfp" / "kubernetes" / "kubernetes_executor_config_pb2.py").is_file():
        pytest.fail(f"{SPEC_DIR} is missing: run `make kfp-spec` (the protos of KFP {RELEASE})")
    return SPEC_DIR


def _check(spec_dir: Path, pipeline: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECKER), str(spec_dir), str(pipeline)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_pinned_backend_accepts_the_compiled_pipeline(spec_dir: Path) -> None:
    result = _check(spec_dir, PIPELINE)
    assert result.returncode == 0, result.stderr
    checked = json.loads(result.stdout)
    platform = list(yaml.safe_load_all(PIPELINE.read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors and checked["executors"] == sorted(executors)  # every config was parsed


def test_the_checked_protos_are_those_of_the_release_the_manifests_pin() -> None:
    assert len(set(_refs().values())) == 1, f"the two kustomizations pin different releases: {_refs()}"
    pinned = {}
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            match = re.fullmatch(r"([a-z-]+)==(\S+) --hash=sha256:[0-9a-f]{64}", line.strip())
            assert match, f"{REQUIREMENTS.name}: {line!r} is not `name==version --hash=sha256:…`"
            pinned[match[1]] = match[2]
    assert pinned == {"kfp-pipeline-spec": RELEASE, "kfp-kubernetes": RELEASE}, (
        f"{REQUIREMENTS.name} must pin the wheels of KFP {RELEASE}, the kustomizations' ref"
    )


@pytest.mark.parametrize("document", ["executor config", "pipeline spec"])
def test_the_check_rejects_an_unknown_field_and_names_it(
    spec_dir: Path, tmp_path: Path, document: str
) -> None:
    spec, platform = yaml.safe_load_all(PIPELINE.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    if document == "executor config":
        executors["exec-train"]["configMapAsEnv"][0]["notAField"] = True
        expected = "executor exec-train:"
    else:
        spec["pipelineInfo"]["notAField"] = True
        expected = "PipelineSpec (document 1):"
    wrong = tmp_path / "pipeline.yaml"
    wrong.write_text(yaml.safe_dump_all([spec, platform]))
    result = _check(spec_dir, wrong)
    assert result.returncode == 1, result.stdout
    (line,) = result.stderr.splitlines()
    assert expected in line and 'no field named "notAField"' in line, line
