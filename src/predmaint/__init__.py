"""predmaint: predictive maintenance of industrial machines, as an MLOps loop."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("predmaint")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
