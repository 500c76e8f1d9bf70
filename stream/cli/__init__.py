"""The ``pulse`` command line: local infrastructure, the worker, data in and out, the demo
and the benchmark. The group is in ``base``; ``ops`` and ``data`` register its commands."""

from stream.cli import data, ops  # noqa: F401 - registers the commands
from stream.cli.base import main

__all__ = ["main"]
