"""How every client reaches Kafka and Redis: the connection settings (security protocol, SASL
credentials, CA file) as client options, start-up checks whose errors name the setting at
fault without showing a secret, and URLs with their password masked for display."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


class ConnectionSetupError(RuntimeError):
    """A service refused the configured connection; the message names the setting to fix."""


@dataclass(frozen=True)
class KafkaAccess:
    """Where Kafka is and how to authenticate: what every producer, consumer and admin client
    of the app is built from (``Settings.kafka``).

    >>> KafkaAccess("k:9093", "SASL_SSL", username="pulse", password="not-shown").options()["sasl_mechanism"]
    'SCRAM-SHA-512'
    >>> "not-shown" in repr(KafkaAccess("k:9093", "SASL_SSL", username="pulse", password="not-shown"))
    False
    """

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    def __str__(self) -> str:
        return self.bootstrap

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS with server verification: the CA file when given, else the system's trust store."""
        if not self.uses_ssl:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def options(self) -> dict[str, Any]:
        """Keyword arguments of aiokafka's producer, consumer and admin clients."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap, "security_protocol": self.security_protocol}
        if self.uses_ssl:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def faust_credentials(self) -> Any:
        """The same, as Faust's ``broker_credentials`` (None: plaintext)."""
        from faust.auth import SASLCredentials, SSLCredentials

        if self.uses_sasl:
            return SASLCredentials(username=self.username, password=self.password, ssl_context=self.ssl_context(),
                                   mechanism=self.sasl_mechanism)
        if self.uses_ssl:
            return SSLCredentials(self.ssl_context())
        return None


async def check_kafka(kafka: KafkaAccess, timeout: float = 15.0) -> None:
    """Open one connection to the first bootstrap server the way the clients will, and turn
    what goes wrong into an error naming the setting (raises ``ConnectionSetupError``)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

    host, port = kafka.bootstrap.split(",")[0].rsplit(":", 1)
    options = {k: v for k, v in kafka.options().items() if k != "bootstrap_servers"}
    where = (f"Kafka at PULSE_KAFKA_BOOTSTRAP={kafka.bootstrap} "
             f"(PULSE_KAFKA_SECURITY_PROTOCOL={kafka.security_protocol})")
    try:
        conn = await asyncio.wait_for(create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout * 1000),
                                                  **options), timeout)
    except SaslAuthenticationFailed:
        raise ConnectionSetupError(
            f"{where} refused the credentials of PULSE_KAFKA_SASL_USERNAME={kafka.username} "
            f"({kafka.sasl_mechanism}); check PULSE_KAFKA_SASL_USERNAME and PULSE_KAFKA_SASL_PASSWORD "
            "(the password is not shown)") from None
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionSetupError(
            f"{where}: its TLS certificate is not trusted ({exc.verify_message}); set PULSE_KAFKA_SSL_CAFILE to the "
            f"CA that signed it (now: {kafka.ca_file or 'the system trust store'})") from None
    except (TimeoutError, ssl.SSLError, ConnectionError, OSError, KafkaConnectionError) as exc:
        raise ConnectionSetupError(
            f"{where} did not answer ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''}); is it running, "
            "and does PULSE_KAFKA_SECURITY_PROTOCOL match its listener?") from None
    except Exception as exc:  # noqa: BLE001 - aiokafka's own errors, e.g. an unsupported SASL mechanism
        hint = f"; check PULSE_KAFKA_SASL_MECHANISM (now {kafka.sasl_mechanism})" if kafka.uses_sasl else ""
        raise ConnectionSetupError(f"{where}: {type(exc).__name__}: {exc}{hint}") from None
    conn.close()


def redacted(url: str) -> str:
    """A Redis URL fit for logs and errors: its password masked.

    >>> redacted("rediss://pulse:s3cret@cache:6380/0?ssl_ca_certs=/ca.pem")
    'rediss://pulse:***@cache:6380/0?ssl_ca_certs=/ca.pem'
    >>> redacted("redis://127.0.0.1:6379/0")
    'redis://127.0.0.1:6379/0'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def check_redis(url: str, timeout: float = 5.0) -> None:
    """PING with the configured URL; a refusal of the credentials or the certificate becomes an
    error naming PULSE_REDIS_URL (raises ``ConnectionSetupError``). A server that does not answer
    is not an error here: the worker rides out Redis outages."""
    where = f"Redis at PULSE_REDIS_URL={redacted(url)}"
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    except redis.AuthenticationError:
        raise ConnectionSetupError(f"{where} refused its user and password (the password is not shown)") from None
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc):
            raise ConnectionSetupError(f"{where} needs a password: redis[s]://[user]:PASSWORD@host:port/db") from None
        raise
    except redis.ConnectionError as exc:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSL" in text:
            raise ConnectionSetupError(
                f"{where}: TLS failed ({text}); for a private CA add ?ssl_ca_certs=/path/ca.pem to the URL") from None
        if "reset by peer" in text and url.startswith("redis://"):
            raise ConnectionSetupError(f"{where}: the server dropped a plain connection; if it speaks TLS, the URL "
                                       "starts with rediss://") from None
    finally:
        client.close()
