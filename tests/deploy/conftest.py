"""The shipped load balancer configs, run for real in front of real `botter serve` instances.

A test renders the file from deploy/ with the fewest substitutions that let it run
unprivileged-in-a-tmpdir on loopback ports (listen addresses, upstream addresses,
certificate and runtime paths), asserts that every substitution happened, and drives the
result with real clients. Everything else is the file as an operator installs it.
"""

import datetime
import ipaddress
import itertools
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from prometheus_client.parser import text_string_to_metric_families

from botter.crypto import Keyring
from botter.db.engine import libpq_url
from botter.web.ingest import SECRET_HEADER
from tests.conftest import eventually, free_port, stop, wait_until_healthy

REPO: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = REPO / "deploy"
NGINX: Final = "/usr/sbin/nginx"
HAPROXY: Final = "/usr/sbin/haproxy"
SECRET_KEY: Final = "deploy-tests-secret-key-0123456789-abcdefghijklmnop"
STARTUP_TIMEOUT_S: Final = 60.0
WEBHOOK_ROUTE: Final = "/webhook/telegram/{bot_id}"
# No test registers bot 1: the app answers its deliveries 401 after a cached lookup, which
# is a cheap way to make each instance count a request under a known route.
WEBHOOK_PATH: Final = "/webhook/telegram/1"


def directives(text: str) -> str:
    """`text` without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def render(text: str, substitutions: list[tuple[str, str]]) -> str:
    """`text` with each (old, new) replaced outside comment lines, failing unless `old`
    occurs there exactly once."""
    lines = text.splitlines(keepends=True)
    for old, new in substitutions:
        count = directives("".join(lines)).count(old)
        assert count == 1, f"expected {old!r} once in the shipped file, found it {count} times"
        lines = [
            line if line.lstrip().startswith("#") else line.replace(old, new) for line in lines
        ]
    rendered = "".join(lines)
    for old, new in substitutions:
        assert old not in directives(rendered), f"{old!r} is still in the rendered file"
        assert new in rendered, f"{new!r} did not make it into the rendered file"
    return rendered


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], what: str) -> None:
    def accepting() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited with {process.returncode}")
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex((host, port)) == 0

    eventually(accepting, STARTUP_TIMEOUT_S, f"{what} to listen on {host}:{port}")


# Certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tls:
    cert: Path  # PEM certificate (nginx ssl_certificate), also the clients' CA
    key: Path  # PEM key (nginx ssl_certificate_key)
    pem: Path  # certificate then key in one file (HAProxy crt)

    def context(
        self,
        minimum: ssl.TLSVersion | None = None,
        maximum: ssl.TLSVersion | None = None,
        alpn: list[str] | None = None,
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.cert))
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        if alpn is not None:
            context.set_alpn_protocols(alpn)
        return context


def make_tls(directory: Path, addresses: list[str]) -> Tls:
    """A self-signed RSA certificate valid for `addresses` (IPs) and localhost."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "botter deploy tests")])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    alt_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in addresses]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    directory.mkdir(parents=True, exist_ok=True)
    tls = Tls(directory / "botter.crt", directory / "botter.key", directory / "botter.pem")
    tls.cert.write_bytes(cert_pem)
    tls.key.write_bytes(key_pem)
    tls.pem.write_bytes(cert_pem + key_pem)
    for path in (tls.key, tls.pem):
        path.chmod(0o600)
    return tls


# botter instances -------------------------------------------------------------------------


@dataclass
class Instance:
    """One `botter serve` process on its own loopback port."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        command = [
            sys.executable,
            "-m",
            "botter",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        log.close()

    def wait_healthy(self) -> None:
        assert self.process is not None
        wait_until_healthy(f"{self.url}/health", self.process, STARTUP_TIMEOUT_S)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)

    def requests_on(self, route: str) -> int:
        """This instance's own count of answered requests for `route`, from its /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if (
                    sample.name == "botter_http_request_duration_seconds_count"
                    and sample.labels.get("route") == route
                ):
                    total += sample.value
        return int(total)


@dataclass
class Instances:
    all: list[Instance] = field(default_factory=list)

    @property
    def ports(self) -> list[int]:
        return [instance.port for instance in self.all]

    def counts(self, route: str = WEBHOOK_ROUTE) -> list[int]:
        return [instance.requests_on(route) for instance in self.all]


@pytest.fixture(scope="module")
def instances(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Instances]:
    """Three `botter serve` processes on the test PostgreSQL and Redis."""
    log_dir = tmp_path_factory.mktemp("instances")
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BOTTER_SECRET_KEYS": SECRET_KEY,
        "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "BOTTER_DATA_DIR": str(log_dir / "data"),
        "DB_POOL_SIZE": "4",
        # Probes through the proxies fail authentication on purpose, from few addresses.
        "WEBHOOK_AUTH_FAILURES_LIMIT": "100000/minute",
    }
    started = Instances()
    try:
        for number in range(1, 4):
            instance = Instance(free_port(), env, log_dir / f"botter-app-{number}.log")
            instance.start()
            started.all.append(instance)
        for instance in started.all:
            instance.wait_healthy()
        yield started
    finally:
        # All at once: each takes a moment to shut down cleanly.
        for instance in started.all:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.terminate()
        for instance in started.all:
            instance.stop()


# A bot whose deliveries are recorded -----------------------------------------------------


@dataclass
class Bot:
    """A bot registered straight in the database, as `botter bot add` leaves it."""

    id: int
    webhook_secret: str
    _update_ids: Iterator[int] = field(
        default_factory=lambda: itertools.count(secrets.randbelow(2**40) * 1000 + 10**9)
    )

    @property
    def path(self) -> str:
        return f"/webhook/telegram/{self.id}"

    @property
    def headers(self) -> dict[str, str]:
        return {SECRET_HEADER: self.webhook_secret, "Content-Type": "application/json"}

    def update(self) -> bytes:
        """A new update, as Telegram delivers it: JSON with an unseen update_id."""
        user = {"id": 1234, "is_bot": False, "first_name": "Ann"}
        chat = {"id": 1234, "type": "private"}
        message = {"message_id": 1, "date": 1_700_000_000, "chat": chat, "from": user}
        return json.dumps({"update_id": next(self._update_ids), "message": message}).encode()


@pytest.fixture(scope="module")
def bot(database_url: str) -> Bot:
    keyring = Keyring((SECRET_KEY,))
    bot_id = secrets.randbelow(2**40) * 1000 + 10**12
    webhook_secret = secrets.token_urlsafe(32)
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        found = connection.execute(
            "INSERT INTO creators (name) VALUES (%s) RETURNING id", (f"creator of {bot_id}",)
        ).fetchone()
        assert found is not None
        connection.execute(
            "INSERT INTO bots (id, creator_id, username, token_ciphertext,"
            " webhook_secret_ciphertext, delivery) VALUES (%s, %s, %s, %s, %s, 'webhook')",
            (
                bot_id,
                int(found[0]),
                f"deploy{bot_id}_bot",
                keyring.encrypt(f"{bot_id}:{secrets.token_urlsafe(27)}"),
                keyring.encrypt(webhook_secret),
            ),
        )
    return Bot(bot_id, webhook_secret)


# A header-echo upstream -------------------------------------------------------------------


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "EchoServer"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        seen = {
            "method": self.command,
            "path": self.path,
            "client": self.client_address[0],
            "headers": [[name.lower(), value] for name, value in self.headers.items()],
        }
        self.server.requests.append(seen)
        body = json.dumps(seen).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


class EchoServer(ThreadingHTTPServer):
    """An upstream that answers every request 200 with the method, path, peer and headers
    it received, as JSON. botter itself shows no request headers, so the headers a proxy
    adds are checked here."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.requests: list[dict[str, Any]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Health checks hang up as soon as they have the status line: nothing to report."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def header_values(seen: dict[str, Any], name: str) -> list[str]:
    return [value for header, value in seen["headers"] if header == name]


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, name="echo", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# Clients ----------------------------------------------------------------------------------

# Rate limits are kept per client address, so each test speaks from addresses of its own:
# all of 127.0.0.0/8 is local on Linux.
_source_numbers = itertools.count(1)


def fresh_source() -> str:
    number = next(_source_numbers)
    return f"127.77.{number // 250}.{number % 250 + 1}"


def client(
    tls: Tls, source: str | None = None, timeout_s: float = 30, **context: Any
) -> httpx.Client:
    transport = httpx.HTTPTransport(verify=tls.context(**context), local_address=source)
    return httpx.Client(transport=transport, timeout=timeout_s)


def upstream_connections(ports: list[int]) -> set[str]:
    """The client address of every TCP connection to `ports` the kernel knows now, seen
    from either end and TIME-WAIT included: a closed connection stays listed a minute."""
    output = subprocess.run(
        ["ss", "-Htan"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    wanted = {f"127.0.0.1:{port}" for port in ports}
    found = set()
    for line in output.splitlines():
        columns = line.split()
        if len(columns) < 5 or columns[0] == "LISTEN":
            continue
        local, peer = columns[3], columns[4]
        if peer in wanted:
            found.add(local)
        elif local in wanted:
            found.add(peer)
    return found


# The main nginx.conf an operator's distribution provides, reduced to what running in a
# temporary directory needs. The shipped file goes inside `http { }`, as in conf.d/.
MAIN_CONF: Final = """\
daemon off;
worker_processes 1;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/conf.d/botter.conf;
}}
"""
