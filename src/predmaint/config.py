"""One typed settings object, read from `params.yaml` and `PREDMAINT_*` environment variables.

Precedence, highest first: keyword arguments, environment (`PREDMAINT_SIMULATOR__SEED=7`;
nested keys joined by `__`), `params.yaml`, the defaults below. The parameters file is
`params.yaml` in the working directory unless `PREDMAINT_PARAMS` names another. Loading has no
side effects: nothing is created until a command needs it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PARAMS_ENV = "PREDMAINT_PARAMS"
DEFAULT_PARAMS_FILE = "params.yaml"


class ConfigError(ValueError):
    """The configuration cannot be used; the message says which key and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulatorSettings(_Section):
    """Defaults of the fleet simulator (each is also a `predmaint simulate` option)."""

    machines: int = Field(10, ge=1, description="Machines in the fleet.")
    steps: int = Field(1000, ge=1, description="Process steps per machine.")
    seed: int = Field(0, ge=0, description="Random seed; the same seed gives the same bytes.")
    interval_seconds: float = Field(60.0, gt=0, description="Time between two readings of a machine.")
    start: datetime = Field(
        datetime(2026, 1, 1, tzinfo=UTC), description="UTC timestamp of step 0 (ISO-8601)."
    )

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("start must carry a UTC offset, e.g. 2026-01-01T00:00:00Z")
        return value.astimezone(UTC)


class IngestSettings(_Section):
    """Defaults of `predmaint ingest` and the sensor store."""

    store: Path = Field(
        Path(".predmaint/store"), description="Store directory (readings, dead letters, state)."
    )
    batch_size: int = Field(50_000, ge=1, description="Readings per commit from replayable sources.")
    compact_after: int = Field(8, ge=2, description="Merge a partition's batch files once it has this many.")
    retry_attempts: int = Field(8, ge=1, description="Attempts per commit when the store fails to write.")
    http_max_body_bytes: int = Field(16 << 20, ge=1024, description="Largest HTTP body accepted (else 413).")
    http_token_file: Path | None = Field(
        None,
        description="File with the bearer token HTTP ingestion requires (needed beyond loopback).",
    )
    http_idle_timeout_seconds: int = Field(
        30, ge=1, le=3600, description="HTTP ingestion drops a connection quiet for this long."
    )
    http_connection_limit: int = Field(
        100, ge=1, le=10_000, description="Open connections HTTP ingestion holds at most."
    )
    max_clock_skew_seconds: float = Field(
        3600.0,
        ge=0,
        le=7 * 86400,
        description="Readings stamped further ahead of this machine's clock are dead letters.",
    )
    mqtt_client_id: str | None = Field(
        None, description="MQTT session id; default predmaint-ingest-<the store's random install id>."
    )
    mqtt_username: str | None = Field(None, description="MQTT username (the password comes from a file).")
    mqtt_password_file: Path | None = Field(None, description="File with the MQTT password.")
    mqtt_ca_file: Path | None = Field(None, description="CA certificate that signs an mqtts:// broker's.")


class DataSettings(_Section):
    """Where DVC snapshots of the store are pushed (see docs/data.md)."""

    version: str = Field(
        "HEAD", description="Snapshot `dvc repro` trains on (a store commit; HEAD = latest)."
    )
    remote: str = Field(
        ".predmaint/dvc-remote",
        description="A directory (default), gdrive://FOLDER_ID or s3://BUCKET/PATH.",
    )
    gdrive_service_account_json: Path | None = Field(
        None, description="Service-account key file for a gdrive:// remote (kept out of git)."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint, e.g. a MinIO URL.")
    s3_profile: str | None = Field(None, description="AWS profile with the credentials for an s3:// remote.")


class TrainingSettings(_Section):
    """The training recipe (see docs/training.md)."""

    horizon: int = Field(
        0, ge=0, description="0: predict the reading's failure; H: a failure within H steps."
    )
    split: Literal["time", "stratified"] = Field("time", description="How train/validation/test are cut.")
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of readings (or of time) for the test part."
    )
    validation_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share for validation (tuning, threshold)."
    )
    trials: int = Field(20, ge=1, description="Optuna trials over both model families.")
    families: tuple[Literal["random_forest", "xgboost"], ...] = Field(
        ("random_forest", "xgboost"), min_length=1, description="Model families searched."
    )
    rolling_window: int = Field(
        0, ge=0, description="Per-machine rolling features over this many readings (0: off)."
    )
    seed: int = Field(0, ge=0, description="Seed of splits, tuning and models.")

    def recipe(self) -> Any:
        """The step-logic configuration."""
        from predmaint.training import TrainingConfig

        return TrainingConfig(**self.model_dump())


class MlflowSettings(_Section):
    """Tracking, registry and promotion (embedded default: SQLite under .predmaint/)."""

    tracking_uri: str = Field(
        "sqlite:///.predmaint/mlflow.db", description="MLflow tracking and registry URI."
    )
    experiment: str = Field("predmaint", description="Experiment of the training runs.")
    artifact_location: str | None = Field(
        ".predmaint/mlartifacts", description="Artifact root of a new experiment."
    )
    model_name: str = Field("predictive-maintenance", description="The registered model.")
    promotion_metric: Literal["f1", "recall", "precision", "pr_auc"] = Field(
        "f1", description="Metric the promotion gate compares."
    )
    promotion_margin: float = Field(0.005, ge=0, description="How much better a challenger must be.")


class ServingSettings(_Section):
    """The prediction service (`predmaint serve`, see docs/serving.md)."""

    host: str = Field("127.0.0.1", description="Address gunicorn binds.")
    port: int = Field(8000, ge=1, le=65535, description="Port gunicorn binds.")
    workers: int = Field(2, ge=1, description="gunicorn worker processes.")
    worker_timeout: int = Field(
        30, ge=1, description="Seconds a request may take before gunicorn replaces its worker (not at boot)."
    )
    poll_seconds: float = Field(10.0, gt=0, description="Seconds between checks of the champion alias.")
    max_batch: int = Field(1000, ge=1, description="Readings per /predict request (413 above).")
    max_body_bytes: int = Field(2 << 20, ge=1024, description="Largest /predict body accepted (413 above).")
    explain: bool = Field(True, description="Top contributing features in every answer.")
    prediction_log: Path | None = Field(
        Path(".predmaint/predictions"),
        description="Directory of the prediction log the drift check reads (null: no log).",
    )
    prediction_log_format: Literal["jsonl", "parquet"] = Field(
        "jsonl", description="jsonl: appended, readable at once; parquet: one compact file per flush."
    )
    prediction_log_flush_seconds: float = Field(
        2.0, gt=0, description="Longest a prediction waits in memory before it is written."
    )
    token_file: Path | None = Field(
        None,
        description="File with the bearer token POST /predict and the page's form require (null: open).",
    )
    prediction_log_retention_days: int | None = Field(
        30,
        ge=1,
        le=3650,
        description="Date folders of the prediction log older than this are removed (null: kept).",
    )


class DriftSettings(_Section):
    """Drift checks and the retrain policy (`predmaint drift check`, see docs/drift.md)."""

    p_value: float = Field(
        0.05, gt=0, lt=1, description="Significance of each test (Bonferroni over features)."
    )
    min_effect: float = Field(
        0.15, ge=0, le=1, description="Smallest move (KS distance / total variation) that counts as drift."
    )
    window: int = Field(1000, ge=50, description="Readings in the current window when read from the log.")
    performance_drop: float = Field(0.10, gt=0, le=1, description="F1 drop below the test F1 that retrains.")
    min_labelled_failures: int = Field(5, ge=1, description="Failures needed before performance is judged.")
    cooldown_hours: float = Field(6.0, ge=0, description="No second retraining within this many hours.")
    kfp_host: str | None = Field(None, description="KFP API server for --trigger kfp (in-cluster URL).")
    kfp_experiment: str = Field("predmaint", description="KFP experiment of triggered runs.")
    kfp_namespace: str = Field(
        "", description="Namespace (profile) of triggered runs in multi-user KFP; empty: single-user."
    )


class Settings(BaseSettings):
    """All settings of predmaint."""

    model_config = SettingsConfigDict(
        env_prefix="PREDMAINT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    state_dir: Path = Field(Path(".predmaint"), description="Local state (stores, MLflow, DVC remote).")
    simulator: SimulatorSettings = SimulatorSettings()
    ingest: IngestSettings = IngestSettings()
    data: DataSettings = DataSettings()
    training: TrainingSettings = TrainingSettings()
    mlflow: MlflowSettings = MlflowSettings()
    serving: ServingSettings = ServingSettings()
    drift: DriftSettings = DriftSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then `params.yaml`."""
        return (init_settings, env_settings, _ParamsFileSource(settings_cls))


class _ParamsFileSource(PydanticBaseSettingsSource):
    """Reads the parameters file named by `PREDMAINT_PARAMS` (default `./params.yaml`)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return read_params_file(params_path())


def params_path() -> Path:
    """Path of the parameters file in use."""
    return Path(os.environ.get(PARAMS_ENV, DEFAULT_PARAMS_FILE))


def read_params_file(path: Path) -> dict[str, Any]:
    """Parse a parameters file; a missing default file means no overrides."""
    if not path.exists():
        if PARAMS_ENV in os.environ:
            raise ConfigError(f"{PARAMS_ENV}={path} does not exist; point it at a params.yaml")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; errors name the offending key and value in one line.

    Raises:
        ConfigError: when a file, environment variable or override is invalid.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']} (got {err.get('input')!r})"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings ({params_path()} / PREDMAINT_* env): {problems}") from None
