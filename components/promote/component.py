"""Move the `champion` alias only when the challenger wins the promotion gate."""

from kfp import dsl
from kfp.dsl import Artifact, Input

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def promote(comparison: Input[Artifact]) -> str:
    """Apply the gate; returns the decision and its reason as JSON."""
    import json

    from predmaint.steps import promote as step

    return json.dumps(step(comparison.path))
