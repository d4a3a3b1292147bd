"""The `predmaint-training` pipeline: a data version in, a registered (and maybe promoted) model out.

Compile: `predmaint pipeline compile` (writes pipelines/training/pipeline.yaml, checked in).
Run: `predmaint pipeline run --local` (kfp.local), `predmaint pipeline submit --host URL`, or
`kfp run create -e EXPERIMENT -f pipelines/training/pipeline.yaml`.
"""

from kfp import dsl, kubernetes

from components.evaluate.component import evaluate
from components.live_test.component import live_test
from components.preprocess.component import preprocess
from components.promote.component import promote
from components.pull_data.component import pull_data
from components.register.component import register
from components.train.component import train
from components.tune.component import tune
from components.validate_data.component import validate_data

SETTINGS_CONFIG_MAP = "predmaint-settings"
MLFLOW_SECRET = "predmaint-mlflow"
STORE_PVC = "predmaint-store"
STORE_MOUNT = "/data/store"

# Settings reach every pod as PREDMAINT_* environment variables (the same names the CLI reads).
_SETTINGS_ENV = {
    "mlflow_tracking_uri": "PREDMAINT_MLFLOW__TRACKING_URI",
    "mlflow_model_name": "PREDMAINT_MLFLOW__MODEL_NAME",
    "data_remote": "PREDMAINT_DATA__REMOTE",
    "training_trials": "PREDMAINT_TRAINING__TRIALS",
}
# Every step logs in to MLflow as the trainer; only pull_data (an s3:// DVC remote) gets S3 keys:
# the server proxies artifacts.
_TRACKING_ENV = {
    "mlflow_tracking_username": "MLFLOW_TRACKING_USERNAME",
    "mlflow_tracking_password": "MLFLOW_TRACKING_PASSWORD",
}
_OBJECT_STORE_ENV = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
}


def _in_cluster(task: dsl.PipelineTask, needs_store: bool = False) -> dsl.PipelineTask:
    kubernetes.use_config_map_as_env(
        task, config_map_name=SETTINGS_CONFIG_MAP, config_map_key_to_env=_SETTINGS_ENV
    )
    secret_env = _TRACKING_ENV | (_OBJECT_STORE_ENV if needs_store else {})
    kubernetes.use_secret_as_env(task, secret_name=MLFLOW_SECRET, secret_key_to_env=secret_env)
    if needs_store:
        kubernetes.mount_pvc(task, pvc_name=STORE_PVC, mount_path=STORE_MOUNT)
    return task


@dsl.pipeline(
    name="predmaint-training", description="Train, register and (if it wins) promote a failure model."
)
def training_pipeline(data_version: str, store: str = STORE_MOUNT) -> str:
    """pull_data → validate_data → preprocess → tune → train → evaluate → register → live_test → promote."""
    pulled = _in_cluster(pull_data(store=store, data_version=data_version), needs_store=True)
    checked = _in_cluster(validate_data(readings=pulled.outputs["readings"]))
    split = _in_cluster(preprocess(readings=pulled.outputs["readings"]).after(checked))
    tuned = _in_cluster(tune(parts=split.outputs["parts"]))
    trained = _in_cluster(train(parts=split.outputs["parts"], tuning=tuned.outputs["tuning"]))
    evaluated = _in_cluster(evaluate(model=trained.outputs["model"], parts=split.outputs["parts"]))
    registered = _in_cluster(
        register(
            model=trained.outputs["model"],
            tuning=tuned.outputs["tuning"],
            metrics_json=evaluated.outputs["metrics_json"],
            data_version=pulled.outputs["Output"],
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
    )
    compared = _in_cluster(live_test(version=registered.output, parts=split.outputs["parts"]))
    decided = _in_cluster(promote(comparison=compared.outputs["comparison"]))
    return decided.output
