"""Check the dataset against the contract before training."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def validate_data(readings: Input[Dataset], report: Output[Artifact]) -> int:
    """Fail early on empty, unlabelled, one-class or contract-breaking data; returns the readings count."""
    from predmaint.steps import validate_data as step

    summary = step(readings.path, report.path)
    report.metadata.update(summary)
    return int(summary["readings"])
