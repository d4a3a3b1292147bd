"""Hyperparameter search over RandomForest and XGBoost."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def tune(parts: Input[Dataset], tuning: Output[Artifact]) -> str:
    """Optuna trials on the validation part; returns the best family."""
    from predmaint.steps import tune as step

    result = step(parts.path, tuning.path)
    tuning.metadata.update({"family": result["family"], "val_pr_auc": result["score"]})
    return str(result["family"])
