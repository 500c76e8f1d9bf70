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
def serve(host: str, port: int, no_auth: bool) -> None:
    import uvicorn

    from stream.api.lookup import AsyncLookupClient
    from stream.api.server import create_app
    from stream.core.rules import load_rules

    settings = load_or_exit()
    tokens = settings.api_token_list()
    if not tokens and not no_auth:
        raise click.UsageError("set PULSE_API_TOKENS (comma-separated bearer tokens, 16-200 characters each), "
                               "or pass --no-auth for a trial on a loopback address")
    if no_auth and tokens:
        raise click.UsageError("--no-auth with PULSE_API_TOKENS set: leave one of them out")
    if no_auth and not _loopback(host):
        raise click.UsageError(f"--no-auth serves only on a loopback address, not {host}")
    rules = load_rules(settings.rules_file)
    app = create_app(AsyncLookupClient.from_url(settings.redis_url), tokens, [rule.name for rule in rules.segments])
    echo_err(f"lookup API on http://{host}:{port} (OpenAPI: /docs) over {settings.redis_url}"
             + ("" if tokens else "; no authentication"))
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
