"""Data-subject requests: ``pulse access`` (``stream/io/access.py``)."""

from __future__ import annotations

import json

import click

from stream.cli.base import echo_err, load_or_exit, main


@main.command(help="Export everything held about one customer (a data-subject access request) as JSON.")
@click.argument("customer_id")
@click.option("--out", "out", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="Where to write the JSON document ('-': stdout).")
def access(customer_id: str, out: str) -> None:
    import asyncio

    from stream.io.access import subject_access

    settings = load_or_exit()
    document = asyncio.run(subject_access(settings, customer_id))
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if out == "-":
        click.echo(text, nl=False)
    else:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
        held = [name for name in ("state", "profile", "tag_changes", "alerts", "churn_labels") if document[name]]
        echo_err(f"wrote {out}: {', '.join(held) or 'nothing held'} for customer {customer_id!r}")
