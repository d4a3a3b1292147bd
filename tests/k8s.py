"""Offline Kubernetes checks shared by the chart and manifest tests.

helm and kubeconform are the pinned builds `make k8s-tools` puts in `.tools/bin` (`make test`
builds them first). kubeconform validates against the JSON schemas bundled in the
kubernetes-validate package, strict variant (unknown fields are errors), so no schema is
downloaded: every manifest is checked against Kubernetes `KUBERNETES_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import kubernetes_validate

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / ".tools" / "bin"
KUBERNETES_VERSION = "1.34.0"
SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
DEFINITIONS = SCHEMAS / f"v{KUBERNETES_VERSION}-local-strict" / "_definitions.json"
# kubeconform fills in the version ("v1.34.0"), "-strict" under -strict, and the file name the
# package uses: <kind>-<group>-<version>.json, e.g. deployment-apps-v1.json, service-v1.json.
SCHEMA_LOCATION = str(
    SCHEMAS
    / "{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}"
    / "{{ .ResourceKind }}{{ .KindSuffix }}.json"
)


def tool(name: str) -> Path:
    """Path of a pinned tool in `.tools/bin`; fails with the command that builds it."""
    path = TOOLS / name
    if not path.is_file():
        raise AssertionError(
            f"{path} is missing: run `make k8s-tools` (needs Go) to build helm and kubeconform"
        )
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm with `args`; the caller checks the exit code and output."""
    return subprocess.run([str(tool("helm")), *args], capture_output=True, text=True, timeout=120)


def schema_cache() -> Path:
    """A kubeconform schema cache that already holds the definitions the kind schemas refer to.

    Each kind schema of kubernetes-validate refers to the shared definitions by their `$id`, an
    https URL that kubeconform would download. Its on-disk cache (`-cache`: one file per URL,
    named by the URL's SHA-256) is seeded with the bundled copy instead, so nothing is fetched.
    """
    package = f"kubernetes-validate-{version('kubernetes-validate')}"
    cache = REPO / ".tools" / "kubeconform-cache" / package / f"v{KUBERNETES_VERSION}-strict"
    url = json.loads(DEFINITIONS.read_text(encoding="utf-8"))["$id"]
    seeded = cache / hashlib.sha256(url.encode()).hexdigest()
    if not seeded.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        partial = seeded.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(DEFINITIONS, partial)
        partial.replace(seeded)
    return cache


def validate(yaml_text: str) -> None:
    """Validate multi-document YAML with kubeconform, strict and offline.

    Raises:
        AssertionError: with kubeconform's report when a resource is invalid, has no schema, or
            when no resource was validated at all (an empty render proves nothing).
    """
    result = subprocess.run(
        [
            str(tool("kubeconform")),
            "-strict",
            "-summary",
            "-output",
            "json",
            "-kubernetes-version",
            KUBERNETES_VERSION,
            "-schema-location",
            SCHEMA_LOCATION,
            "-cache",
            str(schema_cache()),
        ],
        input=yaml_text,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(
            f"kubeconform (Kubernetes {KUBERNETES_VERSION}) rejected the manifests:\n{report}"
        )
    summary = json.loads(result.stdout)["summary"]
    if summary["valid"] == 0 or summary["skipped"] or summary["invalid"] or summary["errors"]:
        raise AssertionError(f"kubeconform validated nothing or skipped resources: {summary}\n{report}")
