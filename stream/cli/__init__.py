"""The ``pulse`` command line: local infrastructure, the worker, data in and out, the demo,
the lookup API and the benchmark. The group is in ``base``; ``ops``, ``data``, ``serve`` and ``alerts`` register
its commands."""

from stream.cli import alerts, data, ops, serve  # noqa: F401 - registers the commands
from stream.cli.base import main

__all__ = ["main"]
