"""`python -m stream.cli`: the `pulse` command."""

from stream.cli import main

main()
