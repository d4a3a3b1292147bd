"""Score challenger and champion on the same test and newest live data."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def live_test(version: str, parts: Input[Dataset], comparison: Output[Artifact]):
    """Metrics of both models on the test part and on the live window training never saw."""
    from predmaint.steps import live_test as step

    comparison.metadata.update(
        {"challenger_version": step(version, parts.path, comparison.path)["challenger_version"]}
    )
