"""`predmaint …`: the command line, the front door to every step."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from predmaint import __version__
from predmaint.scenarios import DESCRIPTIONS, Scenario

app = typer.Typer(
    name="predmaint",
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A failure to report as one line with a non-zero exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        """Keep the message and exit code."""
        super().__init__(message)
        self.exit_code = exit_code


def _progress(total: int, description: str, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled or not err.is_terminal,
        transient=True,
    )


def _given(**options: Any) -> list[str]:
    """The options (as `--flag-name`) a user gave, of those passed as `flag_name=value`."""
    return ["--" + name.replace("_", "-") for name, value in options.items() if value is not None]


def _secret(read: Callable[..., str], *args: Any) -> str:
    """A secret read from its file, or exit 2 with the reason (never the secret itself)."""
    from predmaint.auth import SecretError

    try:
        return read(*args)
    except SecretError as exc:
        raise CliError(str(exc), 2) from None


def _settings() -> Any:
    from predmaint.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        raise CliError(str(exc), exit_code=2) from None


SCENARIO_HELP = "Drift scenario applied from --onset on. " + "; ".join(
    f"{scenario.value}: {text}" for scenario, text in DESCRIPTIONS.items() if scenario != Scenario.none
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"predmaint {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version),
    ] = False,
) -> None:
    """Predictive maintenance MLOps loop: simulate, ingest, version, train, serve, watch for drift."""


# Simulator options, shared by `simulate` and `ingest --source simulator`.
MachinesOpt = Annotated[
    int | None,
    typer.Option("--machines", "-m", min=1, help="Machines in the fleet. [params: simulator.machines]"),
]
StepsOpt = Annotated[
    int | None,
    typer.Option("--steps", "-s", min=1, help="Process steps per machine. [params: simulator.steps]"),
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", min=0, help="Random seed; same seed, same bytes. [params: simulator.seed]"),
]
IntervalOpt = Annotated[
    float | None,
    typer.Option(
        "--interval", help="Seconds between readings of a machine. [params: simulator.interval_seconds]"
    ),
]
StartOpt = Annotated[
    str | None, typer.Option("--start", help="UTC time of step 0, ISO-8601. [params: simulator.start]")
]
ScenarioOpt = Annotated[Scenario, typer.Option("--scenario", help=SCENARIO_HELP)]
OnsetOpt = Annotated[int, typer.Option("--onset", min=0, help="Step from which the scenario applies.")]
RateOpt = Annotated[
    float | None,
    typer.Option("--rate", help="Pace the simulator at this many readings per second (live use)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout at the end.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display or summary line.")]


def _simulation_spec(
    machines: int | None,
    steps: int | None,
    seed: int | None,
    interval: float | None,
    start: str | None,
    scenario: Scenario,
    onset: int,
    rate: float | None,
) -> Any:
    from predmaint.simulator import SimulationSpec

    if rate is not None and not (0 < rate < float("inf")):
        raise CliError(f"--rate must be a positive number of readings per second, got {rate}", 2)
    defaults = _settings().simulator
    try:
        return SimulationSpec(
            machines=machines if machines is not None else defaults.machines,
            steps=steps if steps is not None else defaults.steps,
            seed=seed if seed is not None else defaults.seed,
            interval_seconds=interval if interval is not None else defaults.interval_seconds,
            start=_parse_start(start) if start is not None else defaults.start,
            scenario=Scenario(scenario),
            onset=onset,
        )
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None


@app.command()
def simulate(
    machines: MachinesOpt = None,
    steps: StepsOpt = None,
    seed: SeedOpt = None,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output file: .jsonl or .parquet; '-' writes JSONL to stdout.")
    ] = "-",
    interval: IntervalOpt = None,
    start: StartOpt = None,
    scenario: ScenarioOpt = Scenario.none,
    onset: OnsetOpt = 0,
    rate: RateOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Simulate a fleet of machines following the AI4I 2020 process, one reading per machine per step."""
    from predmaint.datasets import STDOUT, DataError, ReadingsWriter, file_format
    from predmaint.simulator import paced
    from predmaint.simulator import simulate as run_simulation
    from predmaint.stats import Tally

    try:
        file_format(out, writing=True)
    except DataError as exc:
        raise CliError(f"--out: {exc}", 2) from None
    if as_json and out == STDOUT:
        raise CliError("--json prints to stdout, which --out - already uses; write to a file instead", 2)
    spec = _simulation_spec(machines, steps, seed, interval, start, scenario, onset, rate)

    chunks = run_simulation(spec)
    if rate is not None:
        chunks = paced(chunks, rate)
    tally = Tally()
    with ReadingsWriter(out, live=rate is not None) as writer:
        with _progress(spec.readings, "simulating", not quiet and out != STDOUT) as bar:
            task = bar.add_task("simulating", total=spec.readings)
            for chunk in chunks:
                writer.write(chunk)
                tally.add(chunk)
                bar.advance(task, len(chunk))
    summary = {"out": out, "seed": spec.seed, "scenario": spec.scenario.value, "onset": spec.onset}
    summary |= tally.as_dict()
    if as_json:
        typer.echo(json.dumps(summary))
    elif not quiet:
        err.print(
            f"wrote {summary['readings']:,} readings of {summary['machines']} machines to "
            f"{out if out != STDOUT else 'stdout'} "
            f"({summary['failures']:,} failures, {summary['failure_rate']:.2%})"
        )


def _parse_start(value: str) -> datetime:
    from predmaint.schema import ReadingError, parse_timestamp

    try:
        return parse_timestamp(value)
    except ReadingError as exc:
        raise CliError(f"--start: {str(exc).removeprefix('timestamp: ')}", exit_code=2) from None


StoreOpt = Annotated[
    Path | None,
    typer.Option("--store", help="Store directory. [params: ingest.store, default .predmaint/store]"),
]


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="file:PATH (JSONL), simulator, http://HOST:PORT (serve POST /readings) or mqtt://HOST:PORT/TOPIC.",
        ),
    ],
    store: StoreOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="file: keep tailing the file as it grows.")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", min=1, help="Readings per commit. [params: ingest.batch_size]"),
    ] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="mqtt: session id, stable across restarts. [params]")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="http: file with the bearer token every POST must carry; needed to listen beyond "
            "127.0.0.1. [params: ingest.http_token_file]",
        ),
    ] = None,
    mqtt_username: Annotated[
        str | None, typer.Option("--mqtt-username", help="mqtt: username. [params: ingest.mqtt_username]")
    ] = None,
    mqtt_password_file: Annotated[
        Path | None,
        typer.Option(
            "--mqtt-password-file", help="mqtt: file with the password. [params: ingest.mqtt_password_file]"
        ),
    ] = None,
    mqtt_ca_file: Annotated[
        Path | None,
        typer.Option(
            "--mqtt-ca-file",
            help="mqtts: CA certificate of the broker (default: the system's). [params: ingest.mqtt_ca_file]",
        ),
    ] = None,
    machines: MachinesOpt = None,
    steps: StepsOpt = None,
    seed: SeedOpt = None,
    interval: IntervalOpt = None,
    start: StartOpt = None,
    scenario: ScenarioOpt = Scenario.none,
    onset: OnsetOpt = 0,
    rate: RateOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every commit.")] = False,
) -> None:
    """Ingest readings into the store: validate, drop duplicates, keep rejects as dead letters.

    Exactly-once: a restart (even after kill -9) resumes from the last commit. SIGTERM or
    Ctrl-C finishes the current batch and exits cleanly. Push sources (HTTP, MQTT) run until
    stopped; file and simulator sources end with their input unless --follow is given.
    """
    import signal
    import threading
    import time

    from predmaint.auth import read_secret, read_token
    from predmaint.ingest.runner import run_ingest
    from predmaint.ingest.sources import HttpLimits, MqttAuth, SourceError, open_source
    from predmaint.ingest.store import ReadingStore, StoreError, install_id

    settings = _settings()
    _configure_logging(verbose)
    root = store or settings.ingest.store
    options: dict[str, Any] = {"follow": follow, "batch_size": batch_size or settings.ingest.batch_size}
    if source == "simulator":
        options["simulation"] = _simulation_spec(
            machines, steps, seed, interval, start, scenario, onset, rate
        )
        options["rate"] = rate
    elif rate is not None or machines is not None or steps is not None:
        raise CliError("--machines, --steps and --rate apply to --source simulator only", 2)
    if follow and not source.startswith("file:"):
        raise CliError("--follow applies to --source file:PATH only", 2)
    mqtt_given = _given(
        mqtt_username=mqtt_username,
        mqtt_password_file=mqtt_password_file,
        mqtt_ca_file=mqtt_ca_file,
        client_id=client_id,
    )
    if source.startswith(("mqtt://", "mqtts://")):
        try:
            client_id = client_id or settings.ingest.mqtt_client_id or f"predmaint-ingest-{install_id(root)}"
        except StoreError as exc:
            raise CliError(str(exc), 1) from None
        options["client_id"] = client_id
        password_file = mqtt_password_file or settings.ingest.mqtt_password_file
        options["mqtt_auth"] = MqttAuth(
            username=mqtt_username or settings.ingest.mqtt_username,
            password=_secret(read_secret, password_file, "MQTT password file") if password_file else None,
            ca_file=mqtt_ca_file or settings.ingest.mqtt_ca_file,
        )
    elif mqtt_given:
        raise CliError(f"{', '.join(mqtt_given)} apply to --source mqtt[s]://HOST:PORT/TOPIC only", 2)
    if source.startswith("http://"):
        options["http_limits"] = HttpLimits(
            max_body=settings.ingest.http_max_body_bytes,
            idle_timeout=settings.ingest.http_idle_timeout_seconds,
            connection_limit=settings.ingest.http_connection_limit,
        )
        token_file = token_file or settings.ingest.http_token_file
        options["token"] = _secret(read_token, token_file) if token_file else None
    elif token_file is not None:
        raise CliError("--token-file applies to --source http://HOST:PORT only", 2)
    try:
        src = open_source(source, **options)
    except SourceError as exc:
        raise CliError(str(exc), 2) from None

    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        if not stop.is_set():
            err.print(f"predmaint: {signal.Signals(signum).name}: finishing the current batch, then stopping")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        with ReadingStore(root, compact_after=settings.ingest.compact_after) as writer:
            if hasattr(src, "address") and not quiet:
                err.print(f"listening on {src.address}/readings (POST JSON readings); Ctrl-C to stop")
            with _progress(0, "ingesting", not quiet) as bar:
                task = bar.add_task("ingesting", total=None)
                counts = run_ingest(
                    src,
                    writer,
                    stop,
                    on_commit=lambda result: bar.advance(task, result.accepted),
                    retry_attempts=settings.ingest.retry_attempts,
                    max_clock_skew=timedelta(seconds=settings.ingest.max_clock_skew_seconds),
                )
    except (StoreError, SourceError) as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot write to the store {root}: {exc.strerror or exc}") from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    seconds = time.monotonic() - started
    summary = {
        "source": source,
        "store": str(root),
        "accepted": counts.accepted,
        "duplicates": counts.duplicates,
        "rejected": counts.rejected,
        "batches": counts.batches,
        "seconds": round(seconds, 3),
    }
    if as_json:
        typer.echo(json.dumps(summary))
    elif not quiet:
        err.print(
            f"ingested into {root}: {counts.accepted:,} accepted, {counts.duplicates:,} duplicates, "
            f"{counts.rejected:,} rejected (dead letters) in {seconds:.1f} s"
        )


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


store_app = typer.Typer(help="Inspect and repair the sensor store.", no_args_is_help=True)
app.add_typer(store_app, name="store")


def _on_store(store: Path | None, action: Callable[[Path], Any]) -> tuple[Path, Any]:
    """(the store's root, `action(root)`), a StoreError turned into the CLI's one-line error."""
    from predmaint.ingest.store import StoreError

    root = store or _settings().ingest.store
    try:
        return root, action(root)
    except StoreError as exc:
        raise CliError(str(exc)) from None


@store_app.command("stats")
def store_stats(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Readings, machines, dead letters and time span of the store."""
    from predmaint.ingest.store import store_stats as compute

    root, stats = _on_store(store, compute)
    if as_json:
        typer.echo(json.dumps(stats))
        return
    table = Table(title=f"store {root}", show_header=False)
    for key, value in stats.items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)


@store_app.command("repair")
def store_repair(store: StoreOpt = None, as_json: JsonOpt = False) -> None:
    """Rebuild a lost or older checkpoint from the files; move unreadable files to quarantine.

    Deletes nothing: quarantined files go to <store>/_state/quarantine/<UTC time>/. Run it when
    ingest, snapshot or stats say so, with no ingestion running.
    """
    from predmaint.ingest.store import repair

    root, report = _on_store(store, repair)
    if as_json:
        typer.echo(json.dumps(report))
        return
    err.print(f"store {root}: checkpoint rebuilt at batch {report['batch']}")
    for moved in report["quarantined"]:
        err.print(f"  quarantined {moved['file']}: {moved['reason']}")


def _remote(settings: Any) -> Any:
    from predmaint.versioning import VersioningError, remote_config

    try:
        return remote_config(
            settings.data.remote,
            gdrive_service_account_json=settings.data.gdrive_service_account_json,
            s3_endpoint_url=settings.data.s3_endpoint_url,
            s3_profile=settings.data.s3_profile,
        )
    except VersioningError as exc:
        raise CliError(str(exc), 2) from None


@app.command()
def snapshot(store: StoreOpt = None) -> None:
    """Version the store's readings with DVC, commit the .dvc file to git, push to the remote.

    Prints the data version as JSON: git commit, DVC hash of readings/, counts, remote.
    """
    from predmaint.versioning import VersioningError
    from predmaint.versioning import snapshot as take_snapshot

    settings = _settings()
    root = store or settings.ingest.store
    try:
        version = take_snapshot(root, _remote(settings))
    except VersioningError as exc:
        raise CliError(str(exc)) from None
    typer.echo(json.dumps(version.as_dict()))


@app.command()
def pull(
    rev: Annotated[
        str, typer.Option("--rev", help="Snapshot to restore: a commit (or tag) of the store repository.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New directory to restore readings/ into.")],
    store: StoreOpt = None,
) -> None:
    """Restore the readings of an earlier snapshot, byte for byte, from the DVC remote."""
    from predmaint.versioning import VersioningError
    from predmaint.versioning import pull as restore

    settings = _settings()
    root = store or settings.ingest.store
    try:
        result = restore(root, rev, out, _remote(settings))
    except VersioningError as exc:
        raise CliError(str(exc)) from None
    typer.echo(json.dumps(result))


@app.command()
def evaluate(
    data: Annotated[
        Path, typer.Option("--data", help="Readings (JSONL, Parquet, contract CSV) or the original AI4I CSV.")
    ],
    cv: Annotated[int | None, typer.Option("--cv", min=2, help="Stratified K-fold cross-validation.")] = None,
    split_method: Annotated[
        str | None,
        typer.Option("--split", help="time or stratified (without --cv). [params: training.split]"),
    ] = None,
    test_fraction: Annotated[
        float | None, typer.Option("--test-fraction", help="Test share. [params: training.test_fraction]")
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", min=1, help="Tuning budget. [params: training.trials]")
    ] = None,
    as_json: JsonOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each fold.")] = False,
) -> None:
    """Evaluate the full recipe (features, tuning, threshold) on a file, by CV or on a held-out split."""
    import dataclasses

    from predmaint.datasets import DataError as FileError
    from predmaint.datasets import read_readings
    from predmaint.features import DataError
    from predmaint.schema import ReadingError, check_frame
    from predmaint.training import cross_validate, fit

    _configure_logging(verbose)
    settings = _settings()
    if cv is not None and (split_method is not None or test_fraction is not None):
        raise CliError("--cv evaluates by folds; --split and --test-fraction apply without it", 2)
    if split_method not in (None, "time", "stratified"):
        raise CliError(f"--split must be time or stratified, got {split_method!r}", 2)
    if test_fraction is not None and not 0 < test_fraction < 1:
        raise CliError(f"--test-fraction must be between 0 and 1, got {test_fraction}", 2)
    config = settings.training.recipe()
    changes = {"split": split_method, "test_fraction": test_fraction, "trials": trials}
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    try:
        frame = read_readings(data)
        reasons = check_frame(frame)
        if (reasons != "").any():
            first = reasons[reasons != ""].iloc[0]
            raise CliError(f"{data}: {(reasons != '').sum()} invalid reading(s), e.g. {first}")
        if cv is not None:
            result = {"data": str(data), "method": f"{cv}-fold stratified CV", "trials": config.trials}
            result |= cross_validate(frame, config, cv)
        else:
            trained = fit(frame, config)
            result = {
                "data": str(data),
                "method": f"{config.split} split, test fraction {config.test_fraction}",
                "trials": config.trials,
                "family": trained.family,
                "params": trained.params,
            } | {k: v for k, v in trained.test.items() if k != "pr_curve"}
    except (FileError, DataError, ReadingError) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"{result['method']} on {data}", show_header=False)
    for key in ("f1", "recall", "precision", "pr_auc", "roc_auc", "rules_ceiling_f1"):
        if key in result:
            table.add_row(key, f"{result[key]:.3f}")
    Console().print(table)


pipeline_app = typer.Typer(
    help="Compile, run locally, or submit the predmaint-training KFP pipeline.", no_args_is_help=True
)
app.add_typer(pipeline_app, name="pipeline")
DataVersionOpt = Annotated[
    str | None,
    typer.Option(
        "--data-version", help="Snapshot commit of the store to train on [default: the latest snapshot]."
    ),
]


@pipeline_app.command("compile")
def pipeline_compile(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where to write the YAML.")] = None,
) -> None:
    """Compile the pipeline to YAML (default: pipelines/training/pipeline.yaml, checked in)."""
    from predmaint.retrain import PIPELINE_FILE, compile_pipeline

    err.print(f"compiled predmaint-training → {compile_pipeline(out or PIPELINE_FILE)}")


@pipeline_app.command("run")
def pipeline_run(
    local: Annotated[
        bool, typer.Option("--local", help="Run with kfp.local in this environment (required).")
    ] = False,
    data_version: DataVersionOpt = None,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the whole pipeline on one machine with kfp.local (SubprocessRunner, no cluster)."""
    from predmaint.retrain import PipelineError, latest_snapshot, run_local

    if not local:
        raise CliError(
            "only --local runs here; use `predmaint pipeline submit --host URL` for a KFP cluster", 2
        )
    settings = _settings()
    root = store or settings.ingest.store
    try:
        version = data_version or latest_snapshot(root)
        err.print(f"running predmaint-training on data version {version[:12]} of {root} with kfp.local …")
        decision = run_local(version, root, settings.state_dir / "kfp")
    except PipelineError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(decision))
    else:
        verdict = "promoted to champion" if decision["promoted"] else "not promoted"
        err.print(f"challenger {verdict}: {decision['reason']} (champion: v{decision['champion_version']})")


@pipeline_app.command("submit")
def pipeline_submit(
    host: Annotated[str, typer.Option("--host", help="KFP API server, e.g. http://localhost:8080.")],
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="KFP experiment.")] = "predmaint",
    data_version: DataVersionOpt = None,
    store: Annotated[
        str, typer.Option("--store", help="Store path inside the pipeline pods.")
    ] = "/data/store",
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Profile namespace (multi-user KFP only).")
    ] = None,
) -> None:
    """Submit a run of the compiled pipeline to Kubeflow Pipelines (prints the run id)."""
    from predmaint.retrain import PipelineError, submit

    if not data_version:
        raise CliError("--data-version is required for a cluster run (the snapshot commit to train on)", 2)
    try:
        typer.echo(submit(host, experiment, data_version, store, namespace=namespace))
    except PipelineError as exc:
        raise CliError(str(exc)) from None


step_app = typer.Typer(
    help="Run one stage of the training pipeline on plain paths (what dvc.yaml and the components call).",
    no_args_is_help=True,
)
app.add_typer(step_app, name="step")
ReadingsPath = Annotated[Path, typer.Option(help="Readings: a store's readings/ directory or a file.")]
PartsPath = Annotated[
    Path, typer.Option(help="Directory of train/validation/test/live parts (step preprocess).")
]
TuningPath = Annotated[Path, typer.Option(help="Tuning result JSON (written by step tune).")]
ModelPath = Annotated[Path, typer.Option(help="Model directory (written by step train).")]
MetricsPath = Annotated[Path, typer.Option(help="Test metrics JSON (written by step evaluate).")]
ReportPath = Annotated[
    Path, typer.Option(help="Report to write (JSON for validate-data, HTML for evaluate).")
]
OutPath = Annotated[Path, typer.Option(help="Where this step writes its output.")]
ComparisonPath = Annotated[Path, typer.Option(help="Live-test result JSON (written by step live-test).")]


def _step(func: Any, *args: Any) -> None:
    from predmaint.features import DataError
    from predmaint.registry import RegistryError

    try:
        result = func(*(str(a) for a in args))
    except (DataError, RegistryError) as exc:
        raise CliError(str(exc)) from None
    typer.echo(json.dumps(result, default=str))


@step_app.command("pull-data")
def step_pull_data(
    rev: Annotated[str, typer.Option(help="Snapshot commit.")], out: OutPath, store: StoreOpt = None
) -> None:
    """Restore a data version of the store into OUT."""
    from predmaint.steps import pull_data

    _step(pull_data, store or _settings().ingest.store, rev, out)


@step_app.command("validate-data")
def step_validate_data(readings: ReadingsPath, report: ReportPath) -> None:
    """Check readings before training; write a JSON report."""
    from predmaint.steps import validate_data

    _step(validate_data, readings, report)


@step_app.command("preprocess")
def step_preprocess(readings: ReadingsPath, out: OutPath) -> None:
    """Target and train/validation/test/live split into OUT."""
    from predmaint.steps import preprocess

    _step(preprocess, readings, out)


@step_app.command("tune")
def step_tune(parts: PartsPath, out: OutPath) -> None:
    """Optuna search; write the best family and parameters to OUT (JSON)."""
    from predmaint.steps import tune

    _step(tune, parts, out)


@step_app.command("train")
def step_train(parts: PartsPath, tuning: TuningPath, out: OutPath) -> None:
    """Fit the tuned model, threshold and mode models into OUT."""
    from predmaint.steps import train

    _step(train, parts, tuning, out)


@step_app.command("evaluate")
def step_evaluate(model: ModelPath, parts: PartsPath, metrics: MetricsPath, report: ReportPath) -> None:
    """Test metrics (JSON) and an HTML report."""
    from predmaint.steps import evaluate as run

    _step(run, model, parts, metrics, report)


@step_app.command("register")
def step_register(
    model: ModelPath,
    tuning: TuningPath,
    metrics: MetricsPath,
    data_version: Annotated[str, typer.Option(help="Data version tag.")] = "",
    run_id: Annotated[str, typer.Option(help="Pipeline run id tag.")] = "",
) -> None:
    """Register the model in MLflow with alias challenger."""
    from predmaint.steps import register

    lineage = {"data_version": data_version, "pipeline_run_id": run_id}
    _step(lambda m, t, x: register(m, t, x, lineage), model, tuning, metrics)


@step_app.command("live-test")
def step_live_test(
    parts: PartsPath,
    out: OutPath,
    version: Annotated[str | None, typer.Option(help="Challenger version.")] = None,
    registered: Annotated[
        Path | None, typer.Option(help="JSON printed by `step register` (has the version).")
    ] = None,
) -> None:
    """Score challenger and champion on the test and live data."""
    from predmaint.steps import live_test

    if (version is None) == (registered is None):
        raise CliError("give exactly one of --version and --registered", 2)
    if registered is not None:
        try:
            version = str(json.loads(registered.read_text())["version"])
        except (OSError, ValueError, KeyError) as exc:
            raise CliError(f"--registered {registered}: no version in it ({exc})", 2) from None
    _step(live_test, version, parts, out)


@step_app.command("promote")
def step_promote(comparison: ComparisonPath) -> None:
    """Apply the promotion gate to a live-test result."""
    from predmaint.steps import promote

    _step(promote, comparison)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind. [params: serving.host]")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port to bind. [params: serving.port]")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, help="gunicorn worker processes. [params]")
    ] = None,
    poll: Annotated[
        float | None,
        typer.Option(
            "--poll", help="Seconds between checks of the champion alias. [params: serving.poll_seconds]"
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File with the bearer token POST /predict (and the page's form) then requires. "
            "[params: serving.token_file]",
        ),
    ] = None,
) -> None:
    """Serve POST /predict, /metrics and the shop-floor page with gunicorn, following the champion.

    Other settings (batch and body limits, explanations, the prediction log) come from the
    `serving` section of params.yaml or PREDMAINT_SERVING__* variables.
    """
    import shutil
    import tempfile

    if poll is not None and not poll > 0:
        raise CliError(f"--poll must be a positive number of seconds, got {poll}", 2)
    from predmaint.auth import read_token

    settings = _settings().serving
    host, port = host or settings.host, port or settings.port
    token_file = token_file or settings.token_file
    if token_file is not None:
        _secret(read_token, token_file, "--token-file")  # refused here, not in every worker
    workers = workers or settings.workers
    metrics_dir = Path(tempfile.gettempdir()) / f"predmaint-metrics-{port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)  # counters start at zero with each service
    metrics_dir.mkdir(parents=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    if poll is not None:
        env["PREDMAINT_SERVING__POLL_SECONDS"] = str(poll)
    if token_file is not None:
        env["PREDMAINT_SERVING__TOKEN_FILE"] = str(token_file.resolve())
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = [
        str(gunicorn),
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--config",
        "python:serving.gunicorn_conf",
        "serving.wsgi:app",
    ]
    guarded = ", bearer token required" if token_file is not None else ""
    err.print(
        f"serving on http://{host}:{port}/ (POST /predict{guarded}) with {workers} worker(s); Ctrl-C to stop"
    )
    os.execve(command[0], command, env)


@app.command()
def demo(
    scenario: Annotated[
        Scenario, typer.Option("--scenario", help="Drift that starts once v1 serves (see `simulate --help`).")
    ] = Scenario.sensor_bias,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Where the demo works [default: <state_dir>/demo].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Run the whole loop on this machine: stream, snapshot, train, serve, drift, retrain, promote.

    A few minutes on 2 cores. Everything is real (store, DVC, kfp.local, MLflow on SQLite,
    gunicorn); the demo's world lives in --out-dir and is rebuilt on every run.
    """
    from predmaint.demo import STAGES, DemoConfig, run

    settings = _settings()
    workdir = (out_dir or settings.state_dir / "demo").resolve()
    err.print(f"[bold]predmaint demo[/]: scenario {scenario.value}, working in {workdir}")
    started = datetime.now()

    def on_stage(name: str) -> None:
        elapsed = (datetime.now() - started).total_seconds()
        err.print(f"  [green]✓[/] {STAGES[name]} [dim]({elapsed:.0f} s)[/]")

    sys.stdout.flush()
    stdout = os.dup(1)
    os.dup2(2, 1)  # kfp.local and its tasks log to stdout; stdout is for the summary
    try:
        with err.status("running the loop …"):
            summary = run(DemoConfig(workdir=workdir, scenario=scenario), on_stage=on_stage)
    except (RuntimeError, ValueError) as exc:  # a stage failed: say which, with its message
        raise CliError(f"the demo stopped: {exc}; its files are in {workdir}") from None
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    if as_json:
        typer.echo(json.dumps(asdict(summary)))
        return
    table = Table(title=f"predmaint demo — {summary.seconds:.0f} s")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_row("champion version", str(summary.champion_before), str(summary.champion_after))
    table.add_row("live F1 on drifted readings", _fmt(summary.live_f1_before), _fmt(summary.live_f1_after))
    table.add_row("data versions", summary.data_versions[0], summary.data_versions[-1])
    Console().print(table)
    checks = Table(title="scheduled drift checks")
    for column in ("at step", "drift", "retrain", "reason"):
        checks.add_column(column)
    for check in summary.checks:
        checks.add_row(str(check.at_step), str(check.drift), str(check.retrain), check.reason)
    Console().print(checks)
    stages = Table(title="seconds per stage")
    for name in summary.stage_seconds:
        stages.add_column(name, justify="right")
    stages.add_row(*(f"{seconds:.1f}" for seconds in summary.stage_seconds.values()))
    Console().print(stages)
    Console().print(
        f"requests {summary.requests:,} ({summary.readings_answered:,} readings), failed "
        f"{summary.failed_requests}; retraining runs {summary.retrain_runs}; "
        f"summary: {workdir / 'summary.json'}"
    )


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


@app.command()
def compare(
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", help="Where the readings go [default: <state_dir>/compare].")
    ] = None,
) -> None:
    """Simulate a fleet (the `simulator` settings) and compare its statistics with the real AI4I file."""
    from predmaint.datasets import load_ai4i, read_readings, write_readings
    from predmaint.simulator import SimulationSpec
    from predmaint.simulator import simulate as run_simulation
    from predmaint.stats import describe

    settings = _settings()
    target = (out_dir or settings.state_dir / "compare") / "readings.parquet"
    spec = SimulationSpec(
        machines=settings.simulator.machines,
        steps=settings.simulator.steps,
        seed=settings.simulator.seed,
        interval_seconds=settings.simulator.interval_seconds,
        start=settings.simulator.start,
    )
    err.print(
        f"[bold]Simulating[/] {spec.machines} machines × {spec.steps} steps (seed {spec.seed}) → {target}"
    )
    count = write_readings(run_simulation(spec), target)
    simulated = describe(read_readings(target))
    real = describe(load_ai4i())
    table = Table(title=f"Simulated fleet ({count:,} readings) vs the AI4I 2020 file (10,000 readings)")
    table.add_column("statistic")
    table.add_column("simulated", justify="right")
    table.add_column("AI4I 2020", justify="right")
    for key, value in simulated.items():
        if key == "readings":
            continue
        fmt = ".2%" if key.startswith(("rate_", "share_")) else ".3f"
        table.add_row(key, format(value, fmt), format(real[key], fmt))
    Console().print(table)


drift_app = typer.Typer(
    help="Drift checks and guarded retraining (Alibi Detect engine).", no_args_is_help=True
)
app.add_typer(drift_app, name="drift")


class TriggerChoice(StrEnum):
    """What a retrain decision starts."""

    none = "none"
    local = "local"
    kfp = "kfp"


@drift_app.command("check")
def drift_check(
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="Reference readings (JSONL/Parquet/CSV/AI4I CSV) [default: the champion's sample].",
        ),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option(
            "--current",
            help="Current readings [default: the newest drift.window readings of the prediction log].",
        ),
    ] = None,
    no_model: Annotated[
        bool, typer.Option("--no-model", help="Feature drift only: do not load the champion.")
    ] = False,
    trigger: Annotated[
        TriggerChoice,
        typer.Option("--trigger", help="On retrain: run the pipeline locally, submit to KFP, or nothing."),
    ] = TriggerChoice.none,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="HTML report [default: <state_dir>/drift/report-<time>.html]."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare current readings with the reference; say whether, where and how much they drift.

    Retrains only on harm: the champion's measured performance fell, or features it relies on
    drifted and its predictions moved; a cooldown and an idempotency key allow at most one run per
    situation. One JSON line per check goes to stderr (what a CronJob log shows).
    """
    from predmaint.monitoring import DriftError
    from predmaint.retrain import PipelineError
    from predmaint.watch import run_check

    settings = _settings()
    for path in (reference, current):
        if path is not None and not path.is_file():
            raise CliError(f"{path}: no such file", 2)
    try:
        result = run_check(
            settings,
            reference_path=reference,
            current_path=current,
            use_model=not no_model,
            trigger=trigger.value,
            report_path=report,
        )
    except (DriftError, PipelineError) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        drifted = [name for name, f in result.features.items() if f["drifted"]]
        verdict = "RETRAIN" if result.retrain else ("drift" if result.drift else "no drift")
        err.print(f"{verdict}: {result.reason}" + (f" (drifted: {', '.join(drifted)})" if drifted else ""))


@app.command("config")
def show_config() -> None:
    """Print the effective settings (params.yaml + PREDMAINT_* environment) as JSON."""
    typer.echo(_settings().model_dump_json(indent=2))


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; every expected failure is one line on stderr and a non-zero exit code."""
    from predmaint.config import ConfigError
    from predmaint.datasets import DataError

    args = sys.argv[1:] if argv is None else list(argv)
    try:
        result = app(args=args or ["--help"], prog_name="predmaint", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad option values, unknown options, …
        err.print(f"predmaint: error: {exc.format_message()}", markup=False, soft_wrap=True)
        return exc.exit_code
    except typer.Abort:
        err.print("predmaint: aborted", markup=False)
        return 130
    except CliError as exc:
        err.print(f"predmaint: error: {exc}", markup=False, soft_wrap=True)
        return exc.exit_code
    except (DataError, ConfigError) as exc:
        err.print(f"predmaint: error: {exc}", markup=False, soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("predmaint: interrupted", markup=False)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): stop quietly, as Unix tools do.
        sys.stderr.close()
        return 0
    return result if isinstance(result, int) else 0


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
