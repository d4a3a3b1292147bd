"""`python -m predmaint` runs the CLI."""

from predmaint.cli import entry_point

entry_point()
