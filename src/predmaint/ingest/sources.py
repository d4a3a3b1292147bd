"""Where readings come from: a JSONL file (optionally followed), the simulator, HTTP, MQTT.

A source yields `Unit`s: a batch of raw JSON readings (or an in-process table), the source
position after it, and an acknowledgement to call once the batch is durable. Replayable sources
(file, simulator) resume from the position stored with the last commit; push sources (HTTP,
MQTT) acknowledge only after the commit, so the sender or broker redelivers anything lost.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from predmaint.auth import bearer_matches, is_loopback
from predmaint.ingest.parse import split_payload
from predmaint.ingest.store import CommitResult

log = logging.getLogger(__name__)

Ack = Callable[[CommitResult | None, BaseException | None], None]


class SourceError(ValueError):
    """A source cannot be opened or resumed; the message says why and what to do."""


@dataclass
class Unit:
    """One batch from a source."""

    items: list[bytes] = field(default_factory=list)
    item_positions: list[str | None] | None = None
    frame: pd.DataFrame | None = None
    position: Any = None
    ack: Ack | None = None
    reply: dict[str, Any] = field(default_factory=dict)

    def done(self, result: CommitResult | None, error: BaseException | None = None) -> None:
        """Tell the sender how the batch ended."""
        if self.ack is not None:
            self.ack(result, error)


# --- file --------------------------------------------------------------------------------------
class FileSource:
    """A JSONL file read from the last committed byte offset; `follow` keeps tailing it."""

    def __init__(
        self, path: str | Path, *, follow: bool = False, batch_size: int = 50_000, poll: float = 0.2
    ):
        """Name the file (it must exist unless following)."""
        self.path = Path(path)
        self.follow = follow
        self.batch_size = batch_size
        self.poll = poll
        self.id = f"file:{self.path.resolve()}"
        if not self.path.is_file() and not follow:
            raise SourceError(f"{self.path}: no such file")

    def units(self, start: Any, stop: threading.Event) -> Iterator[Unit]:
        """Batches of complete lines from the stored offset on."""
        offset = int((start or {}).get("offset", 0))
        while not self.path.exists():  # following a file that does not exist yet
            if stop.wait(self.poll):
                return
        size = self.path.stat().st_size
        if offset > size:
            raise SourceError(
                f"{self.path} is {size} bytes but this store already ingested {offset} bytes of it; "
                "the file was replaced or truncated — ingest it into a new store"
            )
        with open(self.path, "rb") as handle:
            handle.seek(offset)
            pending: list[bytes] = []
            positions: list[str | None] = []
            tail = b""
            consumed = offset  # byte offset after the last complete line read
            reported = offset  # position carried by the last unit
            while True:
                block = handle.read(4 << 20)
                if block:
                    data = tail + block
                    cut = data.rfind(b"\n") + 1
                    tail = data[cut:]
                    for line in data[:cut].split(b"\n")[:-1]:
                        if line.strip():
                            pending.append(line)
                            positions.append(f"byte {consumed}")
                        consumed += len(line) + 1
                        if len(pending) >= self.batch_size:
                            yield Unit(pending, positions, position={"offset": consumed})
                            pending, positions, reported = [], [], consumed
                            if stop.is_set():
                                return
                    continue
                # End of the file for now. Without --follow, a last line without newline counts.
                if not self.follow and tail.strip():
                    pending.append(tail)
                    positions.append(f"byte {consumed}")
                    consumed += len(tail)
                    tail = b""
                if consumed != reported:
                    yield Unit(pending, positions, position={"offset": consumed})
                    pending, positions, reported = [], [], consumed
                if not self.follow or stop.is_set() or stop.wait(self.poll):
                    return


# --- simulator ---------------------------------------------------------------------------------
class SimulatorSource:
    """The fleet simulator in-process; its output is deterministic, so it resumes by skipping."""

    def __init__(self, spec: Any, *, rate: float | None = None, batch_size: int = 50_000):
        """Simulate `spec` (a `SimulationSpec`), optionally paced at `rate` readings per second."""
        self.spec = spec
        self.rate = rate
        self.batch_size = batch_size
        self.id = (
            f"simulator:seed={spec.seed},machines={spec.machines},"
            f"scenario={spec.scenario.value},onset={spec.onset}"
        )

    def units(self, start: Any, stop: threading.Event) -> Iterator[Unit]:
        """Chunks of simulated readings after the stored count."""
        from predmaint.simulator import paced, simulate

        skip = int((start or {}).get("readings", 0))
        emitted = 0
        chunks = simulate(self.spec, chunk_readings=self.batch_size)
        if self.rate is not None:
            chunks = _rechunk(paced(chunks, self.rate), max_wait=0.5, size=self.batch_size)
        for chunk in chunks:
            if emitted + len(chunk) <= skip:
                emitted += len(chunk)
                continue
            if emitted < skip:
                chunk = chunk.iloc[skip - emitted :]
                emitted = skip
            emitted += len(chunk)
            yield Unit(frame=chunk.reset_index(drop=True), position={"readings": emitted})
            if stop.is_set():
                return


def _rechunk(parts: Iterator[pd.DataFrame], max_wait: float, size: int) -> Iterator[pd.DataFrame]:
    """Group small paced parts into batches of up to `size` readings or `max_wait` seconds."""
    group: list[pd.DataFrame] = []
    count, since = 0, time.monotonic()
    for part in parts:
        group.append(part)
        count += len(part)
        if count >= size or time.monotonic() - since >= max_wait:
            yield pd.concat(group)
            group, count, since = [], 0, time.monotonic()
    if group:
        yield pd.concat(group)


# --- push sources: a queue of units acknowledged after commit ----------------------------------
class _PushSource:
    def __init__(self) -> None:
        self.queue: queue.Queue[Unit] = queue.Queue()

    def _drain(self, stop: threading.Event) -> Iterator[Unit]:
        while True:
            try:
                unit = self.queue.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            yield unit


def _port(parts: Any, default: int | None = None) -> int | None:
    """The URL's port, `default` when it names none, None when it is not a port."""
    try:
        port = parts.port
    except ValueError:
        return None
    return default if port is None else port


# --- HTTP --------------------------------------------------------------------------------------
JSON_LINES_TYPES = ("application/x-ndjson", "application/jsonl")
BODY_TYPES = ("application/json", *JSON_LINES_TYPES)


@dataclass(frozen=True)
class HttpLimits:
    """What one client may hold of the ingestion endpoint.

    Connections are served by waitress's event loop, not a thread each: a client that trickles
    bytes holds one of `connection_limit` sockets and no worker; one that goes quiet for
    `idle_timeout` seconds is disconnected. Bodies are buffered by waitress up to `max_body`
    bytes (Content-Length or chunked) before the application sees them.
    """

    max_body: int = 16 << 20
    idle_timeout: int = 30
    connection_limit: int = 100
    threads: int = 4
    commit_timeout: float = 60.0


class HttpSource(_PushSource):
    """An ingestion endpoint: `POST /readings` with a JSON reading, a JSON array or JSON lines.

    It answers 200 with the batch's counts only after the batch is durable; a body that is not
    JSON is kept as a dead letter and answered 400. With a token, every request but
    `GET /health` must carry `Authorization: Bearer <token>`; without one it binds loopback only.
    """

    def __init__(self, url: str, *, limits: HttpLimits | None = None, token: str | None = None):
        """Bind the server (port 0 picks a free port; see `address`)."""
        from waitress.server import create_server

        super().__init__()
        parts = urlsplit(url)
        port = _port(parts)
        if parts.scheme != "http" or not parts.hostname or port is None:
            raise SourceError(f"{url}: expected http://HOST:PORT, e.g. http://127.0.0.1:8081")
        if token is None and not is_loopback(parts.hostname):
            raise SourceError(
                f"{url}: listening beyond this machine lets anyone write training data; give a token "
                "file (--token-file or ingest.http_token_file) or listen on http://127.0.0.1:PORT"
            )
        self.limits = limits or HttpLimits()
        self.token = token
        self.accepting = True
        try:
            self.server = create_server(
                self._app,
                host=parts.hostname,
                port=port,
                threads=self.limits.threads,
                channel_timeout=self.limits.idle_timeout,
                cleanup_interval=max(1, min(30, self.limits.idle_timeout // 2)),
                connection_limit=self.limits.connection_limit,
                max_request_body_size=self.limits.max_body + 1,  # waitress refuses >= its limit
                ident="predmaint-ingest",
                expose_tracebacks=False,
                clear_untrusted_proxy_headers=True,
            )
        except OSError as exc:
            raise SourceError(f"cannot listen on {parts.hostname}:{port}: {exc.strerror or exc}") from None
        host, port = self.server.effective_host, self.server.effective_port
        self.address = f"http://[{host}]:{port}" if ":" in str(host) else f"http://{host}:{port}"
        self.id = f"http:{self.address}"
        self._thread = threading.Thread(target=self.server.run, name="ingest-http", daemon=True)

    @property
    def max_body(self) -> int:
        """Largest body accepted, in bytes."""
        return self.limits.max_body

    def units(self, start: Any, stop: threading.Event) -> Iterator[Unit]:
        """Batches as clients post them; on stop, refuse new ones, drain the rest, then close."""
        self._thread.start()
        log.info("listening on %s/readings%s", self.address, " (bearer token)" if self.token else "")
        try:
            yield from self._drain(stop)
        finally:
            self.accepting = False
            while not self.queue.empty():
                yield self.queue.get_nowait()
            self._close()

    def _close(self) -> None:
        """Let the workers answer what they hold, then stop the event loop from inside it."""
        from waitress import wasyncore

        self.server.task_dispatcher.shutdown(cancel_pending=False, timeout=5)
        deadline = time.monotonic() + 2
        while self._unsent() and time.monotonic() < deadline:
            time.sleep(0.02)  # the loop thread is still writing answers out
        self.server.trigger.pull_trigger(lambda: wasyncore.close_all(self.server._map))
        self._thread.join(5)

    def _unsent(self) -> bool:
        """True while some connection still has answer bytes to write."""
        return any(getattr(c, "total_outbufs_len", 0) for c in list(self.server._map.values()))

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """The WSGI application waitress serves."""
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        status, body, headers = self._handle(environ, method, path)
        data = json.dumps(body).encode()
        start_response(
            f"{status.value} {status.phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
        )
        return [b"" if method == "HEAD" else data]

    def _handle(
        self, environ: dict[str, Any], method: str, path: str
    ) -> tuple[HTTPStatus, dict[str, Any], list[tuple[str, str]]]:
        if path == "/health":
            if method not in ("GET", "HEAD"):
                return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use GET /health"}, [("Allow", "GET, HEAD")]
            return HTTPStatus.OK, {"status": "ok"}, []
        if path != "/readings":
            return HTTPStatus.NOT_FOUND, {"error": "no such endpoint; POST /readings"}, []
        if method != "POST":
            return HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST /readings"}, [("Allow", "POST")]
        if self.token is not None and not bearer_matches(environ.get("HTTP_AUTHORIZATION"), self.token):
            log.warning("http: unauthenticated POST /readings from %s refused", environ.get("REMOTE_ADDR"))
            challenge = [("WWW-Authenticate", 'Bearer realm="predmaint-ingest"')]
            return HTTPStatus.UNAUTHORIZED, {"error": "send Authorization: Bearer <token>"}, challenge
        if not environ.get("CONTENT_LENGTH"):
            return HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length header"}, []
        content_type = environ.get("CONTENT_TYPE") or "application/json"
        content_type = content_type.split(";")[0].strip().lower()
        if content_type not in BODY_TYPES:
            error = f"Content-Type must be one of {', '.join(BODY_TYPES)}"
            return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"error": error}, []
        body = environ["wsgi.input"].read()
        if not self.accepting:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "ingestion is shutting down; retry"}, []
        if content_type in JSON_LINES_TYPES:
            items: list[bytes] | None = [line for line in body.split(b"\n") if line.strip()]
        else:
            items = split_payload(body)
        return self._commit(body, items)

    def _commit(
        self, body: bytes, items: list[bytes] | None
    ) -> tuple[HTTPStatus, dict[str, Any], list[tuple[str, str]]]:
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def ack(result: CommitResult | None, error: BaseException | None) -> None:
            outcome["result"], outcome["error"] = result, error
            done.set()

        if items is None:
            unit = Unit([body], ["body"], ack=ack)
        else:
            unit = Unit(items, [f"item {i}" for i in range(len(items))], ack=ack)
        self.queue.put(unit)
        if not done.wait(self.limits.commit_timeout):
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the store did not commit in time; retry"}, []
        result: CommitResult | None = outcome["result"]
        if result is None:
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"not stored: {outcome['error']}; retry"}, []
        counts = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": result.rejected,
            "errors": unit.reply.get("errors", []),
        }
        if items is None:
            return (
                HTTPStatus.BAD_REQUEST,
                {"error": "body is not a JSON reading, array or JSON lines"} | counts,
                [],
            )
        return HTTPStatus.OK, counts, []


# --- MQTT --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MqttAuth:
    """How ingestion proves itself to the broker: a username and password, and TLS (`mqtts://`)."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None


class MqttSource(_PushSource):
    """A paho-mqtt subscriber (QoS 1, persistent session) that acknowledges after commit.

    The broker keeps unacknowledged messages for the session and redelivers them after a
    reconnect or a restart of this process; the store drops the duplicates. `mqtts://` connects
    over TLS (verified against `auth.ca_file`, else the system's CAs); credentials come from
    `auth`, never from the URL.
    """

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        batch_size: int = 5_000,
        max_wait: float = 0.2,
        auth: MqttAuth | None = None,
    ):
        """Parse `mqtt[s]://HOST:PORT/TOPIC` and prepare the client."""
        super().__init__()
        parts = urlsplit(url)
        topic = parts.path.lstrip("/")
        port = _port(parts, default=0)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or not topic or port is None:
            raise SourceError(f"{url}: expected mqtt://HOST:PORT/TOPIC, e.g. mqtt://127.0.0.1:1883/sensors")
        if parts.username is not None or parts.password is not None:
            raise SourceError(
                "mqtt: credentials in the URL are refused (process lists and logs show URLs); "
                "use --mqtt-username and --mqtt-password-file"
            )
        if any(char in topic for char in "+#\x00") or "#" in url or "?" in url:
            raise SourceError(f"mqtt: topic {topic!r}: wildcards and NUL are not a topic to ingest")
        self.auth = auth or MqttAuth()
        if self.auth.password is not None and self.auth.username is None:
            raise SourceError("mqtt: a password needs a username (--mqtt-username)")
        if self.auth.ca_file is not None and parts.scheme != "mqtts":
            raise SourceError("mqtt: a CA file applies to mqtts:// URLs only")
        self.tls = parts.scheme == "mqtts"
        self.host, self.topic = parts.hostname, topic
        self.port = port or (8883 if self.tls else 1883)
        self.batch_size, self.max_wait = batch_size, max_wait
        self.id = f"{parts.scheme}:{self.host}:{self.port}/{topic}"
        self.client_id = client_id
        self.connected = threading.Event()
        self._messages: queue.Queue[Any] = queue.Queue()
        self._client: Any = None
        self._closing = False

    def _connect(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            reconnect_on_failure=True,
        )
        client.manual_ack_set(True)
        if self.auth.username is not None:
            client.username_pw_set(self.auth.username, self.auth.password)
        if self.tls:
            try:
                client.tls_set(ca_certs=str(self.auth.ca_file) if self.auth.ca_file else None)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise SourceError(f"mqtt: cannot set up TLS with {self.auth.ca_file}: {exc}") from None
        client.reconnect_delay_set(min_delay=1, max_delay=30)  # exponential backoff between attempts

        def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            if reason.is_failure:
                log.error("mqtt: %s:%s refused the connection: %s; retrying", self.host, self.port, reason)
                return
            client.subscribe(self.topic, qos=1)
            log.info("mqtt: connected to %s:%s, subscribing to %s", self.host, self.port, self.topic)

        def on_subscribe(client: Any, userdata: Any, mid: Any, reasons: Any, properties: Any) -> None:
            # Ready only once the broker has granted the subscription (SUBACK), not at CONNACK.
            if any(reason.is_failure for reason in reasons):
                log.warning("mqtt: subscription to %s refused: %s", self.topic, reasons)
                return
            self.connected.set()
            log.info("mqtt: subscribed to %s", self.topic)

        def on_disconnect(client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
            self.connected.clear()
            if not self._closing:
                log.warning("mqtt: disconnected (%s); reconnecting with backoff", reason)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_subscribe = on_subscribe
        client.on_message = lambda client, userdata, message: self._messages.put(message)
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client

    def units(self, start: Any, stop: threading.Event) -> Iterator[Unit]:
        """Batches of received messages; each is acknowledged to the broker after commit."""
        self._connect()
        try:
            while not stop.is_set():
                unit = self._collect(stop)
                if unit is not None:
                    yield unit
        finally:
            self._closing = True
            self._client.disconnect()
            self._client.loop_stop()

    def _collect(self, stop: threading.Event) -> Unit | None:
        messages: list[Any] = []
        deadline = time.monotonic() + self.max_wait
        while len(messages) < self.batch_size and not stop.is_set():
            try:
                messages.append(self._messages.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        if not messages:
            return None
        items: list[bytes] = []
        positions: list[str | None] = []
        for message in messages:
            payload_items = split_payload(message.payload)
            for item in payload_items if payload_items is not None else [message.payload]:
                items.append(item)
                positions.append(f"{message.topic} mid={message.mid}")
        client = self._client

        def ack(result: CommitResult | None, error: BaseException | None) -> None:
            if result is not None:
                for message in messages:
                    client.ack(message.mid, message.qos)

        return Unit(items, positions, ack=ack)


def open_source(spec: str, **options: Any) -> Any:
    """Build a source from `file:PATH`, `simulator`, `http://HOST:PORT` or `mqtt://HOST:PORT/TOPIC`."""
    if spec.startswith("file:"):
        return FileSource(
            spec.removeprefix("file:"),
            follow=options.get("follow", False),
            batch_size=options.get("batch_size", 50_000),
        )
    if spec == "simulator":
        return SimulatorSource(
            options["simulation"], rate=options.get("rate"), batch_size=options.get("batch_size", 50_000)
        )
    if spec.startswith("http://"):
        return HttpSource(spec, limits=options.get("http_limits"), token=options.get("token"))
    if spec.startswith(("mqtt://", "mqtts://")):
        return MqttSource(spec, client_id=options["client_id"], auth=options.get("mqtt_auth"))
    raise SourceError(
        f"unknown source {spec!r}; use file:PATH, simulator, http://HOST:PORT or mqtt[s]://HOST:PORT/TOPIC"
    )
