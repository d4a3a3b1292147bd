"""Fit the best model, its decision threshold and the failure-mode models."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def train(parts: Input[Dataset], tuning: Input[Artifact], model: Output[Model]):
    """Train on the train part; the threshold is chosen on the validation part."""
    from predmaint.steps import train as step

    model.metadata.update(step(parts.path, tuning.path, model.path))
