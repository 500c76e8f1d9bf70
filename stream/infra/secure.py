"""What the local services need to run secured (``pulse up --secure`` and the security tests):
a private CA and a server certificate for 127.0.0.1/localhost, generated with ``openssl``,
and random passwords; kept in one directory, readable by the owner only."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from stream.infra.process import InfraError

KAFKA_USER = "pulse"
REDIS_USER = "default"
CERT_DAYS = 365


@dataclass(frozen=True)
class SecureSetup:
    """Certificates and credentials of the secured local services (paths are absolute)."""

    home: Path
    kafka_password: str
    redis_password: str

    @property
    def ca_file(self) -> Path:
        return self.home / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.home / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.home / "server.key"

    @property
    def server_pem(self) -> Path:
        """Key and certificate in one file: Kafka's PEM keystore."""
        return self.home / "server.pem"

    def env(self, kafka_bootstrap: str, redis_host: str, redis_port: int, redis_db: int = 0) -> dict[str, str]:
        """The ``PULSE_*`` settings of a client of these services."""
        return {
            "PULSE_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "PULSE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PULSE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PULSE_KAFKA_SASL_USERNAME": KAFKA_USER,
            "PULSE_KAFKA_SASL_PASSWORD": self.kafka_password,
            "PULSE_KAFKA_SSL_CAFILE": str(self.ca_file),
            "PULSE_REDIS_URL": f"rediss://{REDIS_USER}:{self.redis_password}@{redis_host}:{redis_port}/{redis_db}"
                               f"?ssl_ca_certs={self.ca_file}",
        }


def _openssl(*args: str, cwd: Path) -> None:
    tool = shutil.which("openssl")
    if tool is None:
        raise InfraError("`openssl` was not found on PATH; it makes the local services' certificates "
                         "(Debian/Ubuntu: apt-get install openssl)")
    proc = subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfraError(f"openssl {args[0]} failed: {proc.stderr[-2000:]}")


def ensure_setup(home: Path) -> SecureSetup:
    """The setup in ``home``, made on first use (a CA, a server certificate signed by it for
    127.0.0.1 and localhost, and two random passwords); later calls reuse it."""
    home = home.resolve()
    state = home / "credentials.json"
    if state.exists():
        saved = json.loads(state.read_text())
        return SecureSetup(home=home, kafka_password=saved["kafka_password"], redis_password=saved["redis_password"])
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", str(CERT_DAYS), "-subj", "/CN=customer-pulse local CA", cwd=home)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=home)
    (home / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", str(CERT_DAYS), "-extfile", "server.ext", cwd=home)
    setup = SecureSetup(home=home, kafka_password=secrets.token_urlsafe(24), redis_password=secrets.token_urlsafe(24))
    setup.server_pem.write_text(setup.server_key.read_text() + setup.server_cert.read_text())
    saved = {k: v for k, v in asdict(setup).items() if k != "home"}
    descriptor = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(saved, out)
    for name in ("ca.key", "server.key", "server.pem"):
        (home / name).chmod(0o600)
    return setup
