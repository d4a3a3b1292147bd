"""A local Mosquitto broker for the embedded default (tests, benchmarks, the demo).

In a cluster the broker is a service of its own; on one machine predmaint starts the real
`mosquitto` from the Debian package on 127.0.0.1 with persistence, so QoS 1 messages queued for
a persistent session survive a restart of the broker.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


class BrokerError(RuntimeError):
    """Mosquitto is missing or did not start."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary (Debian installs it in /usr/sbin)."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answering(url: str, process: Any, seconds: float = 180) -> None:
    """Wait until `url` answers 200; fail at once if `process` (the server behind it) exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with {process.returncode}")
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def _run(command: list[str], what: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    except FileNotFoundError:
        raise BrokerError(f"{what} is not installed (Debian: mosquitto, openssl)") from None
    except subprocess.CalledProcessError as exc:
        raise BrokerError(f"{what} failed: {exc.stderr.decode(errors='replace')[-300:]}") from None


def _make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, request = folder / "server.crt", folder / "server.key", folder / "server.csr"
    extensions = folder / "server.ext"
    extensions.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    days = ["-days", "2"]
    _run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca)]
        + ["-subj", "/CN=predmaint test CA", *days],
        "openssl",
    )
    _run(
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request)]
        + ["-subj", "/CN=127.0.0.1"],
        "openssl",
    )
    _run(
        ["openssl", "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key)]
        + ["-CAcreateserial", "-out", str(cert), "-extfile", str(extensions), *days],
        "openssl",
    )
    return ca, cert, key


class LocalBroker:
    """Mosquitto on 127.0.0.1, with persistence under `workdir`; restartable on the same port.

    With `users` ({name: password}) anonymous clients are refused and the passwords are hashed
    into a password file by `mosquitto_passwd`; with `tls` the listener speaks only TLS, with a
    certificate for 127.0.0.1 signed by a CA made here (`ca_file`).
    """

    def __init__(
        self,
        workdir: str | Path,
        port: int | None = None,
        *,
        users: dict[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        """Write the configuration; `start()` runs the broker."""
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto is not installed: apt-get install mosquitto (make test does it)")
        self.binary = binary
        self.port = port or free_port()
        self.tls = tls
        workdir = Path(workdir)
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        lines = [f"listener {self.port} 127.0.0.1"]
        if users:
            passwords = workdir / "passwords"
            passwords.write_text("")
            passwords.chmod(0o600)
            for name, password in users.items():
                _run(["mosquitto_passwd", "-b", str(passwords), name, password], "mosquitto_passwd")
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.ca_file: Path | None = None
        if tls:
            self.ca_file, cert, key = _make_certificates(workdir / "tls")
            lines += [f"cafile {self.ca_file}", f"certfile {cert}", f"keyfile {key}"]
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            "\n".join(lines) + "\n"
            "user root\n"  # keep the invoking user when started as root (CI), instead of 'mosquitto'
            "persistence true\n"
            f"persistence_location {workdir / 'data'}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"  # no cap on messages queued for an offline session
        )
        self.log = workdir / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:PORT (mqtts:// with TLS)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Start mosquitto and wait until it accepts connections."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise BrokerError(f"mosquitto exited: {self.log.read_text()[-500:]}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop mosquitto with SIGTERM, which saves its persistence database."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> LocalBroker:
        """Start on entry."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on exit."""
        self.stop()
