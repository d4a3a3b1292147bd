"""Run the training pipeline: compile it, run it locally with kfp.local, or submit it to KFP.

With `step logic → components → pipeline` below it, this module (and the CLI) are the only
package modules that import the pipeline glue.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any


def _pipeline_file() -> Path:
    import pipelines.training

    return Path(pipelines.training.__file__).with_name("pipeline.yaml")


PIPELINE_FILE = _pipeline_file()
"""The compiled pipeline, checked in beside its source (and shipped in the wheel)."""


class PipelineError(RuntimeError):
    """The pipeline could not run or be submitted; the message says why."""


def compile_pipeline(out: str | Path = PIPELINE_FILE) -> Path:
    """Compile `predmaint-training` to YAML (deterministic: compiling twice gives the same file)."""
    from kfp import compiler

    from pipelines.training.pipeline import training_pipeline

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(training_pipeline, str(out))
    return out


def latest_snapshot(store: str | Path) -> str:
    """The newest snapshot (git HEAD) of a store, the default data version."""
    result = subprocess.run(["git", "-C", str(store), "rev-parse", "HEAD"], capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"{store} has no snapshot yet; run `predmaint snapshot --store {store}` first")
    return result.stdout.strip()


def run_local(
    data_version: str,
    store: str | Path,
    pipeline_root: str | Path,
    container_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole pipeline with kfp.local: in this environment, or each task in its image.

    Without `container_args`, the SubprocessRunner runs every task here. With them, the
    DockerRunner runs each task in the pipeline image, as on Kubeflow; they are docker-py's run
    arguments (environment, mounts, user, read_only, network_mode, …), and `store` is then the
    store's path inside the containers. The pipeline root must be writable by the image's user.
    """
    from kfp import local

    from pipelines.training.pipeline import training_pipeline

    Path(pipeline_root).mkdir(parents=True, exist_ok=True)
    runner = (
        local.SubprocessRunner(use_venv=False)
        if container_args is None
        else local.DockerRunner(**container_args)
    )
    local.init(runner=runner, pipeline_root=str(Path(pipeline_root).resolve()))
    try:
        with warnings.catch_warnings():
            # kfp.local notes that the components name a pipeline image; running them in this very
            # environment, which has everything that image has, is what the local runner is for.
            warnings.filterwarnings("ignore", "You may be attemping to run a task", RuntimeWarning)
            where = str(Path(store).resolve()) if container_args is None else str(store)
            task = training_pipeline(data_version=data_version, store=where)
    except RuntimeError as exc:  # kfp.local raises RuntimeError naming the failed task
        raise PipelineError(f"the local pipeline run failed: {str(exc).splitlines()[0]}") from None
    return json.loads(task.output)


def _token_credentials() -> Any:
    """Credentials reading the projected service-account token, if `KF_PIPELINES_SA_TOKEN_PATH` names one.

    `kfp.Client(host=...)` never loads this token by itself (with a host it returns before looking
    for credentials), so without these the API server sees an anonymous request. The credentials
    read the file before each request: the kubelet rotates the token in place.
    """
    from kfp.client import KF_PIPELINES_SA_TOKEN_ENV
    from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials

    path = os.environ.get(KF_PIPELINES_SA_TOKEN_ENV)
    if not path or not Path(path).is_file():
        return None  # outside a cluster: a port-forward to a single-user install needs no token
    return ServiceAccountTokenVolumeCredentials(path=path)


def submit(
    host: str,
    experiment: str,
    data_version: str,
    store: str,
    pipeline_file: str | Path = PIPELINE_FILE,
    namespace: str | None = None,
) -> str:
    """Submit a run of the compiled pipeline to a KFP API server; returns the run id.

    The client is constructed only here: its constructor contacts the server. It sends the
    projected service-account token of `KF_PIPELINES_SA_TOKEN_PATH` when that file exists; a
    `namespace` (multi-user Kubeflow: the profile to run in) places the experiment and the run
    there, none leaves a single-user install its default.
    """
    import kfp

    try:
        with (
            warnings.catch_warnings()
        ):  # the client warns that it needs KFP ≥ 2.0.0-beta.2, which we document
            warnings.simplefilter("ignore", FutureWarning)
            client = kfp.Client(host=host, credentials=_token_credentials())
        with contextlib.redirect_stdout(sys.stderr):  # it prints "Run details: <link>"; stdout is ours
            run = client.create_run_from_pipeline_package(
                str(pipeline_file),
                arguments={"data_version": data_version, "store": store},
                experiment_name=experiment,
                namespace=namespace or None,
                enable_caching=False,
            )
    except Exception as exc:  # noqa: BLE001 - the client raises many kinds; all mean "not submitted"
        raise PipelineError(f"could not submit to KFP at {host}: {str(exc).splitlines()[0]}") from None
    return str(run.run_id)
