"""Target and leakage-free split into train / validation / test / live."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def preprocess(readings: Input[Dataset], parts: Output[Dataset]):
    """Write train, validation, test and live Parquet files into the parts artifact."""
    from predmaint.steps import preprocess as step

    parts.metadata.update(step(readings.path, parts.path))
