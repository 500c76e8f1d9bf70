"""End-to-end benchmark of the pipeline (run `pulse up` first); the same as `pulse bench`.

    .venv/bin/python -m tests.bench.bench_pipeline [--events 50000] [--customers 5000] [--workers 1] [--json FILE]
"""

from __future__ import annotations

import sys

from stream.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
