"""Submitting to KFP sends the projected service-account token and the configured namespace.

Against `tests/kfp_standin.py`, a loopback stand-in of the KFP API that records every request
with its Authorization header. The token file is the one the drift CronJob mounts and names in
`KF_PIPELINES_SA_TOKEN_PATH` (charts/predmaint/templates/drift-cronjob.yaml).
"""

from __future__ import annotations

import subprocess

import pytest
from kfp_standin import KfpStandIn

from predmaint.retrain import submit


def _experiment_creations(kfp: KfpStandIn) -> list[dict]:
    return [
        body
        for method, path, body in kfp.recorded.requests
        if (method, path) == ("POST", "/apis/v2beta1/experiments")
    ]


def test_the_token_file_is_sent_as_bearer_and_the_namespace_reaches_the_experiment(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.projected.token\n")  # a trailing newline is not sent
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with KfpStandIn() as kfp:
        run_id = submit(kfp.url, "predmaint", "abc123", "/data/store", namespace="team-a")
    assert run_id == "run-1"
    assert kfp.recorded.authorizations, "the stand-in saw no request"
    assert set(kfp.recorded.authorizations) == {"Bearer eyJhbGciOiJSUzI1NiJ9.projected.token"}
    [experiment] = _experiment_creations(kfp)
    assert experiment["display_name"] == "predmaint" and experiment["namespace"] == "team-a"
    [run] = kfp.recorded.runs
    assert run["experiment_id"] == kfp.recorded.experiments["predmaint"]


def test_without_a_token_file_or_namespace_the_submission_is_single_user(tmp_path, monkeypatch):
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "absent"))  # outside a cluster
    with KfpStandIn() as kfp:
        submit(kfp.url, "predmaint", "abc123", "/data/store")
    assert set(kfp.recorded.authorizations) == {None}
    [experiment] = _experiment_creations(kfp)
    assert not experiment.get("namespace")


@pytest.mark.parametrize("namespace, expected", [("team-a", "team-a"), ("", None)])
def test_the_drift_trigger_submits_to_the_configured_namespace(tmp_path, monkeypatch, namespace, expected):
    from predmaint.config import load_settings
    from predmaint.watch import _trigger

    store = tmp_path / "store"  # a store with one snapshot: the data version the run must train on
    subprocess.run(["git", "init", "-q", str(store)], check=True)
    subprocess.run(
        ["git", "-C", str(store), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
        + ["commit", "-q", "--allow-empty", "-m", "snapshot"],
        check=True,
    )
    token = tmp_path / "token"
    token.write_text("drift-token")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    monkeypatch.setenv("PREDMAINT_INGEST__STORE", str(store))
    monkeypatch.setenv("PREDMAINT_DRIFT__KFP_NAMESPACE", namespace)
    with KfpStandIn() as kfp:
        monkeypatch.setenv("PREDMAINT_DRIFT__KFP_HOST", kfp.url)
        triggered = _trigger("kfp", load_settings())
    assert triggered["run_id"] == "run-1"
    [experiment] = _experiment_creations(kfp)
    assert (experiment.get("namespace") or None) == expected  # kfp sends "" for single-user
    assert set(kfp.recorded.authorizations) == {"Bearer drift-token"}
