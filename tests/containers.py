"""Run the project's images the way Kubernetes runs them, from the rendered chart and manifests.

A workload's container is taken from `helm template` (or `kubectl kustomize`) output, not from a
second copy: its command and args, its environment (the settings ConfigMap through `envFrom`,
Secret keys from the Secrets the test provides), its security context and its volumes become
`docker run` options:

| Kubernetes | docker run |
|---|---|
| `runAsUser`/`runAsGroup` (container over pod), `fsGroup` | `--user uid:gid`, `--group-add` |
| `readOnlyRootFilesystem: true` | `--read-only` |
| `capabilities.drop` | `--cap-drop` |
| `allowPrivilegeEscalation: false` | `--security-opt no-new-privileges` |
| emptyDir | a tmpfs (`mode=1777`, `exec`, its `sizeLimit`) |
| PersistentVolumeClaim | a bind mount of the host folder the test names for the claim |
| ConfigMap, Secret, projected token | files written for the test, bind-mounted read-only |
| `command` / `args` | `--entrypoint command[0]`, then the rest / replaces the image's CMD |
| `$(VAR)` in command and args | expanded from the container's environment, as the kubelet does |

Containers share the host's network (`--network host`), so they reach each other and the tests
on 127.0.0.1 only; ports come from the chart's values.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from k8s import KUBERNETES_VERSION, helm

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "predmaint"
VERSION = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)[1]
IMAGES = {name: f"predmaint/{name}:{VERSION}" for name in ("serving", "pipeline", "mlflow")}
UNITS = {"Ki": "k", "Mi": "m", "Gi": "g", "K": "k", "M": "m", "G": "g"}


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; with `check`, a failure raises with its output."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args[:3])} … failed ({done.returncode}):\n{done.stderr}")
    return done


def require_image(name: str) -> str:
    """The tag of one of the project's images; fails with the command that builds it."""
    image = IMAGES[name]
    if docker("image", "inspect", image, check=False).returncode != 0:
        raise AssertionError(f"{image} is not built: run `make images` (make test builds them first)")
    return image


def render_chart(values: dict, release: str = "predmaint") -> list[dict]:
    """`helm template` of charts/predmaint with `values` (a values file), as parsed documents."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        done = helm(
            "template",
            release,
            str(CHART),
            "--namespace",
            "predmaint",
            "--kube-version",
            KUBERNETES_VERSION,
            "-f",
            file.name,
        )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def render_kustomization(path: Path) -> list[dict]:
    """`kubectl kustomize` of a folder of manifests/, as parsed documents."""
    done = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def rendered_secret(docs: list[dict], name: str) -> dict[str, str]:
    """The decoded data of a Secret the chart renders itself (such as a random token)."""
    import base64

    secret = find(docs, "Secret", name)
    data = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    return data | secret.get("stringData", {})


def find(docs: list[dict], kind: str, name: str | None = None, component: str | None = None) -> dict:
    """The one document of `kind` with that name or app.kubernetes.io/component label."""
    found = [
        doc
        for doc in docs
        if doc["kind"] == kind
        and (name is None or doc["metadata"]["name"] == name)
        and (
            component is None
            or doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"{len(found)} {kind} named {name!r} / component {component!r} rendered"
    return found[0]


def pod_spec(workload: dict) -> dict:
    """The pod template's spec of a Deployment, StatefulSet, Job, CronJob or Pod."""
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if workload["kind"] == "Pod":
        return workload["spec"]
    return workload["spec"]["template"]["spec"]


def _docker_size(quantity: str) -> str:
    number, unit = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity)).groups()
    return number + UNITS.get(unit or "", "")


def _expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined names are replaced, $$ escapes, the rest stays."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]) if m[1] else "$", text
    )


@dataclass
class Pod:
    """One container of a rendered workload, turned into `docker run` options."""

    docs: list[dict]
    workload: dict
    container_name: str | None = None
    claims: dict[str, Path] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    token: str = "token-of-the-test"
    files: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pod-files-")))

    @property
    def spec(self) -> dict:
        return pod_spec(self.workload)

    @property
    def container(self) -> dict:
        containers = self.spec["containers"]
        if self.container_name is None:
            assert len(containers) == 1, [c["name"] for c in containers]
            return containers[0]
        return next(c for c in containers if c["name"] == self.container_name)

    @property
    def image(self) -> str:
        return self.container["image"]

    def security(self) -> dict:
        """The effective security context: the container's settings over the pod's."""
        return {**self.spec.get("securityContext", {}), **self.container.get("securityContext", {})}

    def env(self) -> dict[str, str]:
        """The container's environment as the kubelet builds it (envFrom first, then env)."""
        env: dict[str, str] = {}
        for source in self.container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(find(self.docs, "ConfigMap", source["configMapRef"]["name"])["data"])
            else:
                env.update(self.secrets[source["secretRef"]["name"]])
        for item in self.container.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
                continue
            ref = item["valueFrom"]
            if "configMapKeyRef" in ref:
                key = ref["configMapKeyRef"]
                data = find(self.docs, "ConfigMap", key["name"]).get("data", {})
            else:
                key = ref["secretKeyRef"]
                data = self.secrets.get(key["name"], {})
            if key["key"] in data:
                env[item["name"]] = data[key["key"]]
            else:
                assert key.get("optional"), f"{item['name']}: {key['name']}/{key['key']} is not provided"
        return env

    def _volume_files(self, volume: dict) -> Path:
        """A folder with the files a ConfigMap, Secret or projected token volume shows."""
        folder = self.files / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            data = find(self.docs, "ConfigMap", volume["configMap"]["name"])["data"]
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            data = self.secrets[name] if name in self.secrets else rendered_secret(self.docs, name)
        else:
            data = {}
            for source in volume["projected"]["sources"]:
                data[source["serviceAccountToken"]["path"]] = self.token
        for key, text in data.items():
            path = folder / key
            path.write_text(text)
            path.chmod(0o644)
        folder.chmod(0o755)
        return folder

    def mounts(self) -> list[str]:
        """`--tmpfs` and `--volume` options for every volume mount of the container."""
        volumes = {volume["name"]: volume for volume in self.spec.get("volumes", [])}
        options = []
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            target, read_only = mount["mountPath"], mount.get("readOnly", False)
            if "emptyDir" in volume:
                size = volume["emptyDir"].get("sizeLimit")
                extra = f",size={_docker_size(size)}" if size else ""
                options += ["--tmpfs", f"{target}:rw,exec,mode=1777{extra}"]
                continue
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in self.claims, f"the test gives no folder for the claim {claim!r}"
                source = self.claims[claim]
            else:
                source = self._volume_files(volume)
                read_only = True
            if "subPath" in mount:
                source = source / mount["subPath"]
            options += ["--volume", f"{source}:{target}{':ro' if read_only else ''}"]
        return options

    def run_options(self) -> list[str]:
        """Every `docker run` option but the image and the command."""
        security = self.security()
        options = ["--network", "host"]
        if "runAsUser" in security:
            options += [
                "--user",
                f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}",
            ]
        if "fsGroup" in security:
            options += ["--group-add", str(security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            options.append("--read-only")
        for capability in security.get("capabilities", {}).get("drop", []):
            options += ["--cap-drop", capability]
        if security.get("allowPrivilegeEscalation") is False:
            options += ["--security-opt", "no-new-privileges"]
        for name, value in self.env().items():
            options += ["--env", f"{name}={value}"]
        return options + self.mounts()

    def command(self, override: list[str] | None = None) -> tuple[list[str], list[str]]:
        """(entrypoint options, arguments after the image) for the container's command and args."""
        env = self.env()
        command = [_expand(word, env) for word in (override or self.container.get("command", []))]
        args = [] if override else [_expand(word, env) for word in self.container.get("args", [])]
        if command:
            return ["--entrypoint", command[0]], command[1:] + args
        return [], args

    def docker_run(
        self,
        *,
        name: str | None = None,
        detach: bool = False,
        override: list[str] | None = None,
        extra: list[str] = (),
    ) -> list[str]:
        """The whole `docker run` command line."""
        entrypoint, arguments = self.command(override)
        name = name or f"predmaint-test-{uuid.uuid4().hex[:8]}"
        return [
            "docker",
            "run",
            "--name",
            name,
            *(["--detach"] if detach else ["--rm"]),
            *self.run_options(),
            *extra,
            *entrypoint,
            self.image,
            *arguments,
        ]

    def run(
        self, *, override: list[str] | None = None, timeout: float = 300, extra: list[str] = ()
    ) -> subprocess.CompletedProcess[str]:
        """Run the container to its end (a Job's pod), returning its exit code and output."""
        return subprocess.run(
            self.docker_run(override=override, extra=extra), capture_output=True, text=True, timeout=timeout
        )

    def start(self, name: str, extra: list[str] = ()) -> Container:
        """Start the container in the background (a Deployment's pod)."""
        done = subprocess.run(
            self.docker_run(name=name, detach=True, extra=extra), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return Container(name)


@dataclass
class Container:
    """A running container, removed by `remove()` (its logs are kept in the test's output)."""

    name: str
    returncode: int | None = None

    def poll(self) -> int | None:
        """None while the container runs, else its exit code (as `subprocess.Popen.poll`)."""
        state = self.inspect()["State"]
        if state["Running"]:
            return None
        self.returncode = state["ExitCode"]
        return self.returncode

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    def running(self) -> bool:
        return self.inspect()["State"]["Running"]

    def exec(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *command, timeout=timeout, check=False)

    def health(self, seconds: float = 120) -> str:
        """Wait until Docker's HEALTHCHECK status is no longer `starting`; returns it."""
        deadline = time.monotonic() + seconds
        status = "starting"
        while time.monotonic() < deadline:
            status = self.inspect()["State"].get("Health", {}).get("Status", "none")
            if status != "starting":
                return status
            time.sleep(1)
        return status

    def remove(self) -> None:
        docker("rm", "--force", self.name, check=False, timeout=60)


def user_id(image: str) -> str:
    """The user an image runs as by default (its USER)."""
    return json.loads(docker("image", "inspect", image).stdout)[0]["Config"]["User"]


def claim_folder(path: Path, fs_group: int = 10001) -> Path:
    """A host folder standing in for a provisioned volume: owned by root, shared through fsGroup.

    As the kubelet does for a pod with `fsGroup`, the folder and everything in it get that group
    with group read/write (and the set-group-id bit on folders); the owner stays root, another uid
    than the pod's.
    """
    import os

    path.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.lchown(name, -1, fs_group)
            if not os.path.islink(name):
                mode = os.stat(name).st_mode
                os.chmod(name, mode | 0o060 | (0o2010 if os.path.isdir(name) else 0))
    return path


def changed_outside_volumes(container: Container, pod: Pod) -> list[str]:
    """Paths `docker diff` reports outside the pod's volume mounts (nothing, on a read-only root)."""
    mounts = [mount["mountPath"] for mount in pod.container.get("volumeMounts", [])]
    # Debian's /var/run is a symlink to /run: docker diff names a mount point under it by /run.
    mounts += [m.replace("/var/run/", "/run/", 1) for m in mounts if m.startswith("/var/run/")]
    changed = []
    for line in docker("diff", container.name).stdout.splitlines():
        path = line.split(maxsplit=1)[1]
        inside = any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)
        parent_of_mount = any(m.startswith(path.rstrip("/") + "/") for m in mounts)
        if not inside and not parent_of_mount:
            changed.append(line)
    return changed


def _postgres_binary(name: str) -> str:
    import glob
    import shutil

    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    assert found, f"PostgreSQL's {name} is missing: make system-deps installs Debian's postgresql"
    return found


@contextmanager
def postgres_server(database: str, user: str, password: str) -> Iterator[int]:
    """A real PostgreSQL on 127.0.0.1 (this machine's binaries, run as `nobody`); yields its port.

    It stands where manifests/base/postgres.yaml runs PostgreSQL in the cluster: MLflow's backend
    store. PostgreSQL refuses to run as root, hence the unprivileged user.
    """
    import os
    import shutil

    from predmaint.ingest.broker import free_port

    folder = Path(tempfile.mkdtemp(prefix="predmaint-postgres-", dir="/var/tmp"))
    folder.chmod(0o755)
    (folder / "password").write_text(password)
    shutil.chown(folder, "nobody")
    shutil.chown(folder / "password", "nobody")
    as_nobody = ["runuser", "-u", "nobody", "--"]
    subprocess.run(
        [
            *as_nobody,
            _postgres_binary("initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            user,
            "--auth=scram-sha-256",
            f"--pwfile={folder / 'password'}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    with (folder / "log").open("w") as log:
        server = subprocess.Popen(
            [
                *as_nobody,
                _postgres_binary("postgres"),
                "-D",
                str(folder / "data"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    env = {**os.environ, "PGPASSWORD": password}
    try:
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [_postgres_binary("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            assert server.poll() is None and time.monotonic() < deadline, (folder / "log").read_text()
            time.sleep(0.5)
        subprocess.run(
            [_postgres_binary("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield port
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class MlflowServer:
    """A tracking server that authenticates, and the passwords of its users."""

    uri: str
    trainer_password: str
    reader_password: str
    admin_password: str

    @property
    def trainer(self) -> dict[str, str]:
        """The environment of an MLflow client logged in as predmaint-trainer."""
        return {
            "MLFLOW_TRACKING_USERNAME": "predmaint-trainer",
            "MLFLOW_TRACKING_PASSWORD": self.trainer_password,
        }

    @property
    def reader(self) -> dict[str, str]:
        """The environment of an MLflow client logged in as predmaint-reader."""
        return {
            "MLFLOW_TRACKING_USERNAME": "predmaint-reader",
            "MLFLOW_TRACKING_PASSWORD": self.reader_password,
        }

    def secret(self, user: str) -> dict[str, str]:
        """The keys of Secret predmaint-mlflow (trainer) or predmaint-mlflow-reader (reader)."""
        password = self.trainer_password if user == "predmaint-trainer" else self.reader_password
        return {"mlflow_tracking_username": user, "mlflow_tracking_password": password}


@contextmanager
def mlflow_server(artifacts: Path) -> Iterator[MlflowServer]:
    """The MLflow image run as manifests/base/mlflow.yaml runs it, on PostgreSQL, with its users.

    The Deployment's own args, env, security context and volumes are used, with the in-cluster
    addresses replaced by this machine's: PostgreSQL on 127.0.0.1, and the proxied artifacts in a
    folder (`--artifacts-destination`) instead of the S3 bucket, as no object store runs here.
    Then the Job mlflow-users runs, as in a cluster, and makes the trainer and the reader.
    """
    from predmaint.ingest.broker import free_port, wait_until_answering

    require_image("mlflow")
    credentials = {"username": "mlflow", "password": uuid.uuid4().hex}
    auth = {key: uuid.uuid4().hex for key in ("admin-password", "flask-secret-key", "trainer-password")}
    auth["reader-password"] = uuid.uuid4().hex
    with postgres_server("mlflow", credentials["username"], credentials["password"]) as pg_port:
        docs = render_kustomization(REPO / "manifests" / "base")
        pod = Pod(
            docs,
            find(docs, "Deployment", "mlflow"),
            secrets={
                "mlflow-postgres": credentials,
                # Read by the Deployment (not optional) but unused: the artifacts are not in S3 here.
                "mlflow-minio": {"root-user": "unused", "root-password": "unused"},
                "mlflow-auth": auth,
            },
            claims={"mlflow-auth": claim_folder(artifacts.parent / f"{artifacts.name}-users")},
        )
        port = free_port()
        database = "postgres.mlflow.svc.cluster.local:5432"
        (uri_item,) = [item for item in pod.container["env"] if item["name"] == "MLFLOW_BACKEND_STORE_URI"]
        assert database in uri_item["value"]  # the backend URI, password and all, is in the environment
        uri_item["value"] = uri_item["value"].replace(database, f"127.0.0.1:{pg_port}")
        args = []
        for arg in pod.container["args"]:
            if arg.startswith("--artifacts-destination="):
                arg = "--artifacts-destination=/mlartifacts"
            if arg.startswith("--port="):
                arg = f"--port={port}"
            args.append(arg)
        assert "--artifacts-destination=/mlartifacts" in args and f"--port={port}" in args, args
        claim_folder(artifacts)
        name = f"predmaint-test-mlflow-{uuid.uuid4().hex[:6]}"
        done = subprocess.run(
            pod.docker_run(
                name=name,
                detach=True,
                override=["mlflow", *args],
                extra=["--volume", f"{artifacts}:/mlartifacts"],
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        container = Container(name)
        uri = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(f"{uri}/health", container, 180)
            users = Pod(docs, find(docs, "Job", "mlflow-users"), secrets={"mlflow-auth": auth})
            (uri_item,) = [item for item in users.container["env"] if item["name"] == "MLFLOW_TRACKING_URI"]
            uri_item["value"] = uri
            made = users.run(timeout=180)
            assert made.returncode == 0 and "predmaint-reader" in made.stdout, made.stdout + made.stderr
            yield MlflowServer(uri, auth["trainer-password"], auth["reader-password"], auth["admin-password"])
        except BaseException:
            print(container.logs()[-3000:])
            raise
        finally:
            container.remove()


PIPELINE_YAML = REPO / "pipelines" / "training" / "pipeline.yaml"


def kfp_task_run_args(docs: list[dict], claims: dict[str, Path], secrets: dict[str, dict[str, str]]) -> dict:
    """docker-py run arguments for kfp.local's DockerRunner, as a KFP pod of the pipeline gets them.

    The environment is what the compiled pipeline's Kubernetes platform config maps from the
    chart's settings ConfigMap and the MLflow Secret (configMapAsEnv, secretAsEnv); the store claim
    is bind-mounted where its pvcMount says; the security context and /tmp are those the chart
    gives the pipeline image (its drift CronJob's container). kfp.local mounts the pipeline root
    itself, at the same path.
    """
    import docker.types

    platform = list(yaml.safe_load_all(PIPELINE_YAML.read_text()))[1]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    environment: dict[str, str] = {}
    mounts: dict[str, docker.types.Mount] = {}
    for config in executors.values():
        for source in config.get("configMapAsEnv", []):
            data = find(docs, "ConfigMap", source["configMapName"])["data"]
            environment.update({item["envVar"]: data[item["configMapKey"]] for item in source["keyToEnv"]})
        for source in config.get("secretAsEnv", []):
            data = secrets.get(source["secretName"], {})
            environment.update(
                {i["envVar"]: data[i["secretKey"]] for i in source["keyToEnv"] if i["secretKey"] in data}
            )
        for mount in config.get("pvcMount", []):
            mounts[mount["mountPath"]] = docker.types.Mount(
                mount["mountPath"], str(claims[mount["constant"]]), "bind"
            )
    chart_pod = Pod(docs, find(docs, "CronJob", component="drift-check"))
    security = chart_pod.security()
    tmp = next(v for v in chart_pod.spec["volumes"] if v["name"] == "tmp")["emptyDir"]
    return {
        "network_mode": "host",
        "user": f"{security['runAsUser']}:{security['runAsGroup']}",
        "group_add": [str(security["fsGroup"])],
        "read_only": security["readOnlyRootFilesystem"],
        "cap_drop": security["capabilities"]["drop"],
        "security_opt": ["no-new-privileges"] if security["allowPrivilegeEscalation"] is False else [],
        "tmpfs": {"/tmp": f"rw,exec,mode=1777,size={_docker_size(tmp['sizeLimit'])}"},
        "environment": environment,
        "mounts": list(mounts.values()),
    }
