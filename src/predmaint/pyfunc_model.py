"""MLflow "models from code" entry: the pyfunc logged for each registered version."""

from mlflow.models import set_model

from predmaint.model import FailureModel

set_model(FailureModel())
