"""The ``pulse`` command line: local infrastructure, the worker, data in and out, the demo,
the lookup API, alerts, data-subject requests and the benchmarks. The group is in ``base``;
``ops``, ``data``, ``insight``, ``serve``, ``alerts`` and ``privacy`` register its commands."""

from stream.cli import alerts, data, insight, ops, privacy, serve  # noqa: F401 - registers the commands
from stream.cli.base import main

__all__ = ["main"]
