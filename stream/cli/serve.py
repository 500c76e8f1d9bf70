"""``pulse serve``: the HTTP lookup API (``stream/api/server.py``) under uvicorn."""

from __future__ import annotations

import ipaddress

import click

from stream.cli.base import echo_err, load_or_exit, main


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@main.command(help="Serve the lookup API over Redis (OpenAPI at /docs). Needs PULSE_API_TOKENS.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-auth", is_flag=True,
              help="Serve without tokens, on a loopback address only (a local trial or the demo).")
@click.option("--no-kafka", is_flag=True, help="Do not follow Kafka (the dashboard's pipeline panels stay empty).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (one per core for the most lookups per second).")
def serve(host: str, port: int, no_auth: bool, no_kafka: bool, workers: int) -> None:
    import os

    import uvicorn

    settings = load_or_exit(redis=True)
    tokens = settings.api_token_list()
    if not tokens and not no_auth:
        raise click.UsageError("set PULSE_API_TOKENS (comma-separated bearer tokens, 16-200 characters each), "
                               "or pass --no-auth for a trial on a loopback address")
    if no_auth and tokens:
        raise click.UsageError("--no-auth with PULSE_API_TOKENS set: leave one of them out")
    if no_auth and not _loopback(host):
        raise click.UsageError(f"--no-auth serves only on a loopback address, not {host}")
    os.environ["PULSE_SERVE_KAFKA"] = "0" if no_kafka else "1"  # read by every server process
    echo_err(f"lookup API on http://{host}:{port} (dashboard: /, OpenAPI: /docs) over {settings.redis_display}"
             + ("" if tokens else "; no authentication") + (f"; {workers} processes" if workers > 1 else ""))
    uvicorn.run("stream.api.server:from_environment", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)
