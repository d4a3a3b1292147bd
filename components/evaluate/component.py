"""Measure the trained model on the test period."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    parts: Input[Dataset],
    metrics_json: Output[Artifact],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    report: Output[HTML],
) -> float:
    """Failure-class metrics for the KFP UI (scalars, confusion matrix, HTML report); returns F1."""
    from predmaint.steps import evaluate as step

    result = step(model.path, parts.path, metrics_json.path, report.path)
    for key in ("f1", "recall", "precision", "pr_auc", "roc_auc", "threshold"):
        metrics.log_metric(key, float(result[key]))
    confusion.log_confusion_matrix(
        ["no failure", "failure"], [[result["tn"], result["fp"]], [result["fn"], result["tp"]]]
    )
    return float(result["f1"])
