"""Register the model in MLflow with its lineage; alias `challenger`."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Model

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    tuning: Input[Artifact],
    metrics_json: Input[Artifact],
    data_version: str,
    pipeline_run_id: str,
) -> str:
    """Log the run and register a new version tagged with data version and run id; returns the version."""
    from predmaint.steps import register as step

    lineage = {"data_version": data_version, "pipeline_run_id": pipeline_run_id}
    return str(step(model.path, tuning.path, metrics_json.path, lineage)["version"])
