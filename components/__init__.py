"""KFP components: one thin wrapper per pipeline stage, each calling one `predmaint.steps` function.

Top-level imports here are stdlib and kfp only; heavy imports go inside component bodies, so
compiling the pipeline imports neither pandas nor xgboost. Every component runs in the one
pipeline image, named once here (override with PREDMAINT_PIPELINE_IMAGE when compiling); kfp
is installed in that image, so components do not pip-install it at run time.
"""

import os

PIPELINE_IMAGE = os.environ.get("PREDMAINT_PIPELINE_IMAGE", "predmaint/pipeline:0.1.0")
