"""Parse a compiled pipeline as a Kubeflow Pipelines API server of one release does, strictly.

    python tests/kfp_spec_check.py .tools/kfp-spec/<release> pipelines/training/pipeline.yaml

The release's protobuf modules come from the unpacked wheels `kfp-pipeline-spec` and
`kfp-kubernetes` in the first argument (`make kfp-spec`). Like the backend, the first YAML
document is read as `ml_pipelines.PipelineSpec`, the second as `ml_pipelines.PlatformSpec`, and the
config of each executor under `platforms.kubernetes.deploymentSpec.executors` (a Struct there) as
`kfp_kubernetes.KubernetesExecutorConfig` (backend/src/v2/compiler/argocompiler/container.go), all
refusing unknown fields. Exit 0 prints what was checked as JSON; exit 1 prints one line per
rejected document. Run it in a fresh interpreter: the release's protos must not meet the kfp SDK's
own in one descriptor pool, so this module never imports kfp.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format


def _load(name: str, path: Path) -> types.ModuleType:
    """Import one generated module from its file, under the name its siblings import it by."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"{path} is missing: run `make kfp-spec`")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_protos(spec_dir: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """`pipeline_spec_pb2` and `kubernetes_executor_config_pb2` of the release unpacked in spec_dir."""
    if "kfp" in sys.modules:
        raise SystemExit("kfp is already imported here: run the check in a fresh interpreter")
    # Empty parent packages: the generated code imports `kfp.pipeline_spec.pipeline_spec_pb2`, and
    # neither the installed kfp nor `kfp.kubernetes`'s __init__ (which imports kfp) may run.
    for package in ("kfp", "kfp.pipeline_spec", "kfp.kubernetes"):
        sys.modules[package] = types.ModuleType(package)
    pipeline_spec = _load(
        "kfp.pipeline_spec.pipeline_spec_pb2", spec_dir / "kfp/pipeline_spec/pipeline_spec_pb2.py"
    )
    sys.modules["kfp.pipeline_spec"].pipeline_spec_pb2 = pipeline_spec  # type: ignore[attr-defined]
    kubernetes = _load(
        "kfp.kubernetes.kubernetes_executor_config_pb2",
        spec_dir / "kfp/kubernetes/kubernetes_executor_config_pb2.py",
    )
    return pipeline_spec, kubernetes


def _parse(what: str, document: Any, message: Any, problems: list[str]) -> None:
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        problems.append(f"{what}: {str(exc).splitlines()[0]}")


def check(spec_dir: Path, pipeline_file: Path) -> dict[str, Any]:
    """Every document of the compiled pipeline through the release's messages; problems listed."""
    pipeline_spec, kubernetes = load_protos(spec_dir)
    documents = list(yaml.safe_load_all(pipeline_file.read_text()))
    problems: list[str] = []
    _parse("PipelineSpec (document 1)", documents[0], pipeline_spec.PipelineSpec(), problems)
    executors: dict[str, Any] = {}
    if len(documents) > 1:
        _parse("PlatformSpec (document 2)", documents[1], pipeline_spec.PlatformSpec(), problems)
        platform = documents[1].get("platforms", {}).get("kubernetes", {})
        executors = platform.get("deploymentSpec", {}).get("executors", {})
    for name, config in executors.items():
        _parse(f"executor {name}", config, kubernetes.KubernetesExecutorConfig(), problems)
    return {"pipeline": str(pipeline_file), "executors": sorted(executors), "problems": problems}


def main(argv: list[str]) -> int:
    """Check argv[1]'s pipeline against the protos in argv[0]; 0 when the release accepts it."""
    spec_dir, pipeline_file = (Path(arg) for arg in argv)
    result = check(spec_dir, pipeline_file)
    for problem in result["problems"]:
        print(f"rejected by {spec_dir.name}: {problem}", file=sys.stderr)
    print(json.dumps(result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
