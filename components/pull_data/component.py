"""Restore the readings of a data version (a DVC snapshot of the store)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import PIPELINE_IMAGE


@dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)
def pull_data(store: str, data_version: str, readings: Output[Dataset]) -> str:
    """Pull `data_version` of the store into the readings artifact; returns <commit>:<dvc md5>."""
    from predmaint.steps import pull_data as step

    pulled = step(store, data_version, readings.path)
    readings.metadata.update(
        {"commit": pulled["commit"], "dvc_md5": pulled["dvc_md5"], "files": pulled["files"]}
    )
    return f"{pulled['commit'][:12]}:{pulled['dvc_md5']}"
