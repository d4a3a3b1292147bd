"""The kustomize manifests, the kind cluster config and skaffold.yaml, checked offline.

Every local kustomization (base and overlays) is rendered with `kubectl kustomize` and validated
with kubeconform, strict, against the Kubernetes version of tests/k8s.py. The Kubeflow Pipelines
kustomizations are remote bases on GitHub, which kubectl downloads while rendering: they cannot be
rendered without the network, so their pinned release refs are checked as text instead.
skaffold itself is not run (it needs Docker and a cluster): its config is checked against the
Dockerfiles, the chart and its values.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s import KUBERNETES_VERSION, helm, validate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
MANIFESTS = REPO / "manifests"
LOCAL_KUSTOMIZATIONS = ["base", "overlays/kind", "overlays/minikube", "overlays/local"]
OVERLAYS = ["overlays/kind", "overlays/minikube", "overlays/local"]
KFP = MANIFESTS / "kubeflow-pipelines"
VALUES = REPO / "charts" / "predmaint" / "values.yaml"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def render(directory: str) -> list[dict[str, Any]]:
    """Render one kustomization with `kubectl kustomize`; fails with the error if it does not build."""
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is missing: install it (its built-in kustomize renders the manifests offline)"
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"kubectl kustomize manifests/{directory} failed:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload resource."""
    spec = resource["spec"]
    if resource["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def workloads(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The resources that run pods."""
    return [resource for resource in resources if resource["kind"] in POD_KINDS]


def containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container of a workload, init containers included."""
    spec = pod_spec(resource)
    return spec.get("initContainers", []) + spec["containers"]


@pytest.fixture(scope="module", params=LOCAL_KUSTOMIZATIONS)
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]], str]:
    """(directory, resources, YAML text) of one local kustomization, rendered once per module."""
    resources = render(request.param)
    return request.param, resources, yaml.safe_dump_all(resources)


def test_every_local_kustomization_renders_and_is_valid_kubernetes(rendered) -> None:
    directory, resources, text = rendered
    assert {"Namespace", "StatefulSet", "Deployment", "Service", "Job"} <= {r["kind"] for r in resources}
    try:
        validate(text)
    except AssertionError as error:
        raise AssertionError(f"manifests/{directory} (Kubernetes {KUBERNETES_VERSION}): {error}") from None


def test_every_container_runs_restricted_non_root_with_resources(rendered) -> None:
    assert_restricted(*rendered[:2])


def assert_restricted(directory: str, resources: list[dict[str, Any]]) -> None:
    """Every container of RESOURCES runs under the restricted Pod Security Standard, with resources."""
    for workload in workloads(resources):
        pod = pod_spec(workload)["securityContext"]
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", workload["metadata"]["name"]
        for container in containers(workload):
            where = f"{directory}: {workload['metadata']['name']}/{container['name']}"
            security = container.get("securityContext", {})
            non_root = security.get("runAsNonRoot", pod.get("runAsNonRoot"))
            uid = security.get("runAsUser", pod.get("runAsUser"))
            assert non_root is True and isinstance(uid, int) and uid > 0, f"{where} may run as root"
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), f"{where}: no requests"
            assert "memory" in container["resources"]["limits"], f"{where}: no memory limit"


def test_long_running_containers_have_probes_and_pinned_images(rendered) -> None:
    directory, resources, _ = rendered
    for workload in workloads(resources):
        for container in containers(workload):
            where = f"{directory}: {workload['metadata']['name']}/{container['name']}"
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag and tag != "latest" and re.search(r"\d", tag), (
                f"{where}: image {container['image']} is not pinned to a release"
            )
            if workload["kind"] in {"Deployment", "StatefulSet"}:
                assert {"readinessProbe", "livenessProbe"} <= container.keys(), f"{where}: no probes"


def test_namespaces_of_the_stack_enforce_the_restricted_pod_security_standard(rendered) -> None:
    _, resources, _ = rendered
    namespaces = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Namespace"}
    for resource in resources:
        if resource["kind"] == "Namespace":
            continue
        namespace = resource["metadata"].get("namespace")
        assert namespace in namespaces, f"{resource['kind']}/{resource['metadata']['name']} in {namespace}"
        labels = namespaces[namespace]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_mlflow_runs_the_image_make_images_builds_against_postgres_and_minio(rendered) -> None:
    _, resources, _ = rendered
    (mlflow,) = [r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == "mlflow"]
    (container,) = containers(mlflow)
    assert container["image"] == f"predmaint/mlflow:{VERSION}"
    args = " ".join(container["args"])
    assert "--artifacts-destination=s3://mlflow/" in args
    env = {item["name"]: item for item in container["env"]}
    # The URI with the database password is in the environment, which only the process's user
    # reads, and expands variables defined before it.
    uri = env["MLFLOW_BACKEND_STORE_URI"]["value"]
    assert uri.startswith("postgresql+psycopg2://$(POSTGRES_USER):$(POSTGRES_PASSWORD)@postgres.mlflow.svc")
    names = [item["name"] for item in container["env"]]
    assert names.index("POSTGRES_PASSWORD") < names.index("MLFLOW_BACKEND_STORE_URI")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"].startswith("http://minio.mlflow.svc")
    # In-cluster clients (the chart's mlflow.trackingUri) must pass MLflow's Host-header check.
    allowed = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    assert "mlflow.mlflow.svc.cluster.local:5000" in allowed


def _example_secrets() -> dict[tuple[str, str], dict[str, Any]]:
    examples = {}
    for path in sorted((MANIFESTS / "secrets").glob("*.example.yaml")):
        secret = yaml.safe_load(path.read_text())
        assert secret["kind"] == "Secret"
        assert path.read_text().startswith("# TEMPLATE ONLY"), f"{path.name} must say it is a template"
        examples[(secret["metadata"]["namespace"], secret["metadata"]["name"])] = secret
    assert examples, "manifests/secrets/*.example.yaml are missing"
    return examples


def test_secrets_are_templates_outside_every_kustomization_and_cover_every_reference(rendered) -> None:
    directory, resources, _ = rendered
    assert not [r for r in resources if r["kind"] == "Secret"], f"{directory} renders a Secret"
    examples = _example_secrets()
    for secret in examples.values():
        for key, value in secret["stringData"].items():
            assert "CHANGE-ME" in value or value.startswith("http") or key.endswith("username"), (
                f"{secret['metadata']['name']}.{key} looks like a real value: use a CHANGE-ME placeholder"
            )
    for workload in workloads(resources):
        namespace = workload["metadata"]["namespace"]
        for container in containers(workload):
            for item in container.get("env", []):
                reference = item.get("valueFrom", {}).get("secretKeyRef")
                if reference:
                    example = examples.get((namespace, reference["name"]))
                    assert example, (
                        f"Secret {namespace}/{reference['name']} has no example in manifests/secrets"
                    )
                    assert reference["key"] in example["stringData"], f"{reference} not in its example"


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [text for value in node.values() for text in _strings(value)]
    if isinstance(node, list):
        return [text for value in node for text in _strings(value)]
    return [node] if isinstance(node, str) else []


def test_no_kustomization_includes_the_secret_examples() -> None:
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        entries = _strings(yaml.safe_load(kustomization.read_text()))
        assert not [entry for entry in entries if "secrets/" in entry or "example.yaml" in entry], (
            f"{kustomization.relative_to(REPO)} includes the secret templates"
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_local_overlays_use_the_standard_storage_class_and_an_nginx_ingress_mlflow_accepts(
    overlay: str,
) -> None:
    resources = render(overlay)
    for statefulset in [r for r in resources if r["kind"] == "StatefulSet"]:
        for claim in statefulset["spec"]["volumeClaimTemplates"]:
            assert claim["spec"]["storageClassName"] == "standard", statefulset["metadata"]["name"]
    (ingress,) = [r for r in resources if r["kind"] == "Ingress"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (mlflow,) = [r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == "mlflow"]
    env = {item["name"]: item.get("value") for item in containers(mlflow)[0]["env"]}
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(","), (
            f"{overlay}: MLflow would answer 403 to its ingress host {rule['host']}"
        )


def test_kubeflow_pipelines_is_pinned_to_one_release_in_both_kustomizations() -> None:
    # Remote bases: rendering them downloads the kubeflow/pipelines repository, so the pin is
    # checked as text (a release tag X.Y.Z, the same in both parts, and the one docs/deploy.md names).
    refs = {}
    for part in ("cluster-scoped", "platform-agnostic"):
        kustomization = yaml.safe_load((KFP / part / "kustomization.yaml").read_text())
        (resource,) = kustomization["resources"]
        assert resource.startswith("github.com/kubeflow/pipelines/manifests/kustomize/"), resource
        match = re.fullmatch(r"[^?]+\?ref=(\d+\.\d+\.\d+)", resource)
        assert match, f"{part}: {resource} is not pinned to a release tag (?ref=X.Y.Z)"
        refs[part] = match[1]
    assert len(set(refs.values())) == 1, f"the two parts pin different releases: {refs}"
    release = refs["cluster-scoped"]
    assert f"?ref={release}" in (REPO / "docs" / "deploy.md").read_text(), (
        "docs/deploy.md names another release"
    )


def test_kind_cluster_maps_ports_80_and_443_to_an_ingress_ready_node() -> None:
    cluster = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())
    assert (cluster["kind"], cluster["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    (node,) = [node for node in cluster["nodes"] if node["role"] == "control-plane"]
    mappings = {(m["containerPort"], m["hostPort"]) for m in node["extraPortMappings"]}
    assert {(80, 80), (443, 443)} <= mappings
    assert 'node-labels: "ingress-ready=true"' in "".join(node["kubeadmConfigPatches"])


# NetworkPolicies of the mlflow namespace: who reaches which port, evaluated as the API defines it
# (a pod selected by no Ingress policy accepts everything; policies add up; a peer with a
# podSelector alone means the policy's namespace). Not enforced on the cluster of `make cluster`.

# Pods outside the stack that could try to connect: (namespace, labels).
OUTSIDERS = {
    "predmaint serving (kubeflow)": (
        "kubeflow",
        {"app.kubernetes.io/name": "predmaint", "app.kubernetes.io/component": "serving"},
    ),
    "training run (kubeflow)": ("kubeflow", {"pipelines.kubeflow.org/v2_component": "true"}),
    "ingress-nginx": (
        "ingress-nginx",
        {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"},
    ),
    "a pod in default": ("default", {"app": "debug"}),
    "a stray pod in mlflow": ("mlflow", {"app": "debug"}),
}
KUBEFLOW = {"predmaint serving (kubeflow)", "training run (kubeflow)"}


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """Whether a label selector matches LABELS; an empty or missing selector matches everything."""
    selector = selector or {}
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        has = key in labels
        if {
            "In": not (has and labels[key] in values),
            "NotIn": has and labels[key] in values,
            "Exists": not has,
            "DoesNotExist": has,
        }[operator]:
            return False
    return True


def _admits(peer: dict[str, Any], policy_namespace: str, namespace: str, labels: dict[str, str]) -> bool:
    if "ipBlock" in peer:
        return True  # an address range may hold any pod's address: count it as open
    if "namespaceSelector" in peer:
        in_namespace = _selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace})
    else:
        in_namespace = namespace == policy_namespace
    return in_namespace and _selects(peer.get("podSelector"), labels)


def _opens(ports: list[dict[str, Any]] | None, number: int, name: str | None) -> bool:
    if not ports:
        return True
    for port in ports:
        value = port.get("port")
        if port.get("protocol", "TCP") != "TCP":
            continue
        if value is None or value in (number, name):
            return True
        if isinstance(value, int) and value <= number <= port.get("endPort", value):
            return True
    return False


def _reaches(
    policies: list[dict[str, Any]], target: dict[str, Any], port: int, source: tuple[str, dict[str, str]]
) -> bool:
    """Whether SOURCE (namespace, labels) may open a TCP connection to PORT of the TARGET pod."""
    namespace, labels = source
    names = {p["containerPort"]: p.get("name") for c in target["containers"] for p in c.get("ports", [])}
    isolating = [
        policy
        for policy in policies
        if policy["metadata"]["namespace"] == target["namespace"]
        and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        and _selects(policy["spec"]["podSelector"], target["labels"])
    ]
    if not isolating:
        return True
    return any(
        _opens(rule.get("ports"), port, names.get(port))
        and (
            not rule.get("from")
            or any(_admits(peer, policy["metadata"]["namespace"], namespace, labels) for peer in rule["from"])
        )
        for policy in isolating
        for rule in policy["spec"].get("ingress") or []
    )


def _mlflow_pods(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Name -> namespace, pod labels and containers of every workload in namespace mlflow."""
    pods = {}
    for workload in workloads(resources):
        if workload["metadata"]["namespace"] == "mlflow":
            template = workload["spec"]["template"]
            pods[workload["metadata"]["name"]] = {
                "namespace": "mlflow",
                "labels": template["metadata"]["labels"],
                "containers": containers(workload),
            }
    return pods


def who_reaches(resources: list[dict[str, Any]], target: str, port: int) -> set[str]:
    """Names of the stack's pods and of OUTSIDERS that may connect to PORT of the pod TARGET."""
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    pods = _mlflow_pods(resources)
    sources = {name: (pod["namespace"], pod["labels"]) for name, pod in pods.items()} | OUTSIDERS
    return {name for name, source in sources.items() if _reaches(policies, pods[target], port, source)}


def assert_mlflow_namespace_is_fenced(resources: list[dict[str, Any]]) -> None:
    """Every pod in mlflow is isolated; each port is open to exactly the clients that need it."""
    policies = [r for r in resources if r["kind"] == "NetworkPolicy"]
    for name, pod in _mlflow_pods(resources).items():
        assert any(
            policy["metadata"]["namespace"] == "mlflow"
            and "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
            and _selects(policy["spec"]["podSelector"], pod["labels"])
            for policy in policies
        ), f"pod {name} in mlflow is selected by no Ingress NetworkPolicy: it accepts every connection"
    through_ingress = {"ingress-nginx"} if [r for r in resources if r["kind"] == "Ingress"] else set()
    expected = {
        # The MLflow server alone holds the database password.
        ("postgres", 5432): {"mlflow"},
        # The chart's pods and the training runs, the Job that makes the users; the ingress
        # controller where an Ingress routes the UI.
        ("mlflow", 5000): KUBEFLOW | {"mlflow-users"} | through_ingress,
        # Artifacts go through the MLflow server; the Job makes its bucket.
        ("minio", 9000): {"mlflow", "minio-buckets"},
        ("minio", 9001): set(),  # the console: kubectl port-forward only
    }
    for (target, port), clients in expected.items():
        reach = who_reaches(resources, target, port)
        assert reach == clients, f"{target}:{port} is open to {sorted(reach)}, not {sorted(clients)}"


def test_the_mlflow_namespace_admits_only_the_clients_of_each_port(rendered) -> None:
    directory, resources, _ = rendered
    try:
        assert_mlflow_namespace_is_fenced(resources)
    except AssertionError as error:
        raise AssertionError(f"manifests/{directory}: {error}") from None


def test_the_fence_check_fails_without_each_policy_or_with_a_wider_one() -> None:
    resources = render("overlays/kind")
    names = [r["metadata"]["name"] for r in resources if r["kind"] == "NetworkPolicy"]
    assert set(names) == {"default-deny-ingress", "mlflow", "mlflow-from-ingress", "postgres", "minio"}
    for name in names:
        without = [
            r for r in resources if not (r["kind"] == "NetworkPolicy" and r["metadata"]["name"] == name)
        ]
        with pytest.raises(AssertionError):
            assert_mlflow_namespace_is_fenced(without)
    wider = copy.deepcopy(resources)
    (postgres,) = [r for r in wider if r["kind"] == "NetworkPolicy" and r["metadata"]["name"] == "postgres"]
    postgres["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
    with pytest.raises(AssertionError, match="postgres:5432 is open to"):
        assert_mlflow_namespace_is_fenced(wider)


def test_a_dvc_remote_on_minio_opens_its_s3_port_to_kubeflow_alone(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    relative = Path(os.path.relpath(MANIFESTS, overlay))
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [str(relative / "overlays" / "kind")],
        "components": [str(relative / "components" / "dvc-remote-on-minio")],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    resources = render(str(overlay))
    validate(yaml.safe_dump_all(resources))
    assert who_reaches(resources, "minio", 9000) == {"mlflow", "minio-buckets"} | KUBEFLOW
    assert who_reaches(resources, "minio", 9001) == set()
    assert who_reaches(resources, "postgres", 5432) == {"mlflow"}
    for overlay_directory in OVERLAYS:  # opt-in: no overlay includes it
        assert "dvc-remote-on-minio" not in (MANIFESTS / overlay_directory / "kustomization.yaml").read_text()


# skaffold.yaml


@pytest.fixture(scope="module")
def skaffold() -> dict[str, Any]:
    """skaffold.yaml, parsed."""
    return yaml.safe_load((REPO / "skaffold.yaml").read_text())


@pytest.fixture(scope="module")
def chart_values() -> dict[str, Any]:
    """The chart's values.yaml, parsed."""
    assert VALUES.is_file(), f"{VALUES.relative_to(REPO)} is missing: skaffold deploys that chart"
    return yaml.safe_load(VALUES.read_text())


def _has_key(values: dict[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_skaffold_builds_both_images_from_their_dockerfiles(skaffold) -> None:
    assert skaffold["apiVersion"].startswith("skaffold/v4beta") and skaffold["kind"] == "Config"
    artifacts = {a["image"]: a for a in skaffold["build"]["artifacts"]}
    assert artifacts.keys() == {"predmaint/serving", "predmaint/pipeline"}
    for artifact in artifacts.values():
        assert artifact["context"] == "."
        assert (REPO / artifact["docker"]["dockerfile"]).is_file(), artifact


def test_skaffold_tags_images_as_the_compiled_pipeline_names_them(skaffold) -> None:
    tag = skaffold["build"]["tagPolicy"]["envTemplate"]["template"]
    assert tag == VERSION, f"skaffold tags {tag}, the project is {VERSION}"
    pipeline = (REPO / "pipelines" / "training" / "pipeline.yaml").read_text()
    assert f"image: predmaint/pipeline:{tag}" in pipeline


def test_skaffold_deploys_the_chart_with_the_built_images(skaffold, chart_values) -> None:
    (release,) = skaffold["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    assert "artifactOverrides" not in release, "obsolete in skaffold v2: use setValueTemplates"
    templates = release["setValueTemplates"]
    for image, prefix in (("predmaint_serving", "image"), ("predmaint_pipeline", "pipelineImage")):
        assert templates[f"{prefix}.repository"] == f"{{{{.IMAGE_REPO_{image}}}}}"
    set_values = dict(release["setValues"])
    for profile in skaffold["profiles"]:
        for patch in profile.get("patches", []):
            prefix = "/deploy/helm/releases/0/setValues/"
            if patch["path"].startswith(prefix):
                set_values[patch["path"].removeprefix(prefix)] = patch["value"]
    for key in [*templates, *set_values]:
        assert _has_key(chart_values, key), f"skaffold sets {key}, which charts/predmaint/values.yaml lacks"
    assert set_values["mlflow.trackingUri"] == "http://mlflow.mlflow.svc.cluster.local:5000"


def _skaffold_set_value(template: str, artifact: str, built: str) -> str:
    """A setValueTemplates value as skaffold expands it for one build (pkg/skaffold/helm/args.go).

    `built` is the build's reference: `name:tag@sha256:…` when pushed, `name:<image id>` when
    loaded into the cluster. Its repository, tag and digest fill IMAGE_REPO_/IMAGE_TAG_/
    IMAGE_DIGEST_<artifact> (the artifact's image name with `_` for `/-.:`), and skaffold drops a
    trailing "@" (an empty digest).
    """
    name, _, digest = built.partition("@")
    repository, _, tag = name.rpartition(":")
    artifact = re.sub(r"[/\-.:]", "_", artifact)
    fields = {"REPO": repository, "TAG": tag, "DIGEST": digest}
    value = re.sub(
        rf"{{{{\.IMAGE_(REPO|TAG|DIGEST)_{artifact}}}}}", lambda match: fields[match.group(1)], template
    )
    assert "{{" not in value, f"{template} names another artifact than {artifact}"
    return value.removesuffix("@")


def _deployed_images(skaffold: dict[str, Any], serving: str, pipeline: str) -> dict[str, str]:
    """The image of the serving Deployment and the drift CronJob, as skaffold would install them."""
    (release,) = skaffold["deploy"]["helm"]["releases"]
    built = {"image": ("predmaint/serving", serving), "pipelineImage": ("predmaint/pipeline", pipeline)}
    sets = [
        f"{key}={_skaffold_set_value(template, *built[key.partition('.')[0]])}"
        for key, template in release["setValueTemplates"].items()
    ]
    chart = str(REPO / release["chartPath"])
    result = helm(
        "template", release["name"], chart, "--kube-version", KUBERNETES_VERSION, "--set", ",".join(sets)
    )
    assert result.returncode == 0, result.stderr
    objects = {f"{o['kind']}/{o['metadata']['name']}": o for o in yaml.safe_load_all(result.stdout) if o}
    deployment = objects["Deployment/predmaint"]["spec"]["template"]["spec"]
    cronjob = objects["CronJob/predmaint-drift-check"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return {"serving": deployment["containers"][0]["image"], "pipeline": cronjob["containers"][0]["image"]}


def test_skaffold_rebuilds_roll_the_pods(skaffold) -> None:
    """Every build reaches the pod templates as an immutable reference, so new content rolls the pods.

    The version tag is the same for every build (the compiled pipeline names it): passed alone,
    a rebuild would leave the Deployment unchanged and its pods on the old image.
    """
    first, second = "a" * 64, "b" * 64
    for pushed in (True, False):

        def build(image: str, content: str, pushed: bool = pushed) -> str:
            name = f"team/predmaint/{image}" if pushed else f"predmaint/{image}"
            return f"{name}:{VERSION}@sha256:{content}" if pushed else f"{name}:{content}"

        before = _deployed_images(skaffold, build("serving", first), build("pipeline", first))
        after = _deployed_images(skaffold, build("serving", second), build("pipeline", second))
        assert before == {"serving": build("serving", first), "pipeline": build("pipeline", first)}
        assert after == {"serving": build("serving", second), "pipeline": build("pipeline", second)}


def test_skaffold_on_kind_also_loads_the_pipeline_image_kfp_runs(skaffold) -> None:
    """KFP's pods run the compiled pipeline's `predmaint/pipeline:<version>`: kind must get that tag."""
    artifacts = [artifact["image"] for artifact in skaffold["build"]["artifacts"]]
    kind = next(profile for profile in skaffold["profiles"] if profile["name"] == "kind")
    patches = {patch["path"]: patch["value"] for patch in kind["patches"]}
    hooks = patches[f"/build/artifacts/{artifacts.index('predmaint/pipeline')}/hooks"]["after"]
    name = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())["name"]
    load = ["kind", "load", "docker-image", "--name", name, f"predmaint/pipeline:{VERSION}"]
    assert [hook["command"] for hook in hooks] == [load]


def test_skaffold_profiles_keep_local_images_local(skaffold) -> None:
    profiles = {profile["name"]: profile for profile in skaffold["profiles"]}
    assert {"kind", "minikube"} <= profiles.keys()
    for name in ("kind", "minikube"):
        patches = {patch["path"]: patch["value"] for patch in profiles[name]["patches"]}
        assert patches["/build/local"] == {"push": False}, name
    assert profiles["kind"]["activation"] == [{"kubeContext": "kind-predmaint"}]
    assert yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())["name"] == "predmaint"


def test_deploy_guide_names_only_files_and_make_targets_that_exist() -> None:
    guide = (REPO / "docs" / "deploy.md").read_text()
    repository_path = r"(?<![\w/.-])((?:manifests|charts|docker|pipelines|serving)/[\w./-]*[\w/])"
    paths = set(re.findall(repository_path, guide))
    missing = sorted(path for path in paths if not (REPO / path).exists())
    assert not missing, f"docs/deploy.md names paths that do not exist: {missing}"
    makefile = (REPO / "Makefile").read_text()
    for target in set(re.findall(r"`make ([\w-]+)", guide)):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), f"docs/deploy.md runs `make {target}`"


def test_the_optional_mosquitto_is_the_broker_the_chart_names_by_default() -> None:
    # Applied into the chart's namespace (`kubectl apply -k manifests/mosquitto -n <namespace>`):
    # no namespace of its own, a Service named as the chart's default ingest.mqtt.host.
    resources = render("mosquitto")
    validate(yaml.safe_dump_all(resources))
    assert all("namespace" not in r["metadata"] for r in resources)
    assert_restricted("mosquitto", resources)
    values = yaml.safe_load(VALUES.read_text())["ingest"]["mqtt"]
    (service,) = [r for r in resources if r["kind"] == "Service"]
    assert service["metadata"]["name"] == values["host"]
    assert [port["port"] for port in service["spec"]["ports"]] == [values["port"]]
    (deployment,) = workloads(resources)
    config = [r for r in resources if r["kind"] == "ConfigMap"][0]["data"]["mosquitto.conf"]
    assert "listener 1883" in config and "allow_anonymous false" in config
    assert "password_file /mosquitto/auth/passwords" in config  # hashed from Secret mosquitto-users
    assert containers(deployment)[0]["image"].startswith("predmaint/cluster-mosquitto:")


# A secret's value on a command line: an expanded secret variable, or credentials in a URL.
SECRET_ON_COMMAND_LINE = re.compile(r"\$\(?\{?\w*(PASSWORD|SECRET|TOKEN|KEY)|://[^/\s:@]+:[^/\s@]+@", re.I)


def secrets_on_command_lines(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(workload/container, argument) of every argument that would show a secret in `ps`."""
    return [
        (f"{resource['kind']}/{resource['metadata']['name']}/{container['name']}", part)
        for resource in workloads(resources)
        for container in containers(resource)
        for part in container.get("command", []) + container.get("args", [])
        if SECRET_ON_COMMAND_LINE.search(part)
    ]


def test_no_secret_is_on_a_command_line(rendered) -> None:
    # Arguments are world-readable (/proc/*/cmdline, ps); secrets go in files or the environment.
    _, resources, _ = rendered
    assert not secrets_on_command_lines(resources)


def test_the_scan_finds_a_secret_on_a_command_line() -> None:
    pod = {"containers": [{"name": "c", "args": ["--uri=postgresql://u:$(POSTGRES_PASSWORD)@db/x"]}]}
    deployment = {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": pod}}}
    assert secrets_on_command_lines([deployment]) == [("Deployment/d/c", pod["containers"][0]["args"][0])]
    pod["containers"][0]["args"] = ['mc alias set store http://x:9000 "$MINIO_ROOT_PASSWORD"']
    assert secrets_on_command_lines([deployment])
