"""The command line, `pgcue …`: the one layer that starts the API and the workers."""

from pgcue.cli.main import main

__all__ = ["main"]
