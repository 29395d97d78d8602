"""deploy/haproxy/haproxy.cfg, run by Debian's HAProxy in front of three `botter serve`."""

import contextlib
import csv
import io
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import free_port
from tests.deploy.conftest import (
    DEPLOY,
    HAPROXY,
    WEBHOOK_PATH,
    EchoServer,
    Instances,
    Tls,
    client,
    directives,
    eventually,
    header_values,
    make_tls,
    render,
    wait_for_port,
)

SHIPPED: Final = DEPLOY / "haproxy" / "haproxy.cfg"
SERVERS: Final = ("botter-app-1", "botter-app-2", "botter-app-3")
CHECK_TIMEOUT_S: Final = 30.0  # down after 3 checks 2 s apart, up after 2: with room


def haproxy_c(config: Path) -> str:
    checked = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    report = checked.stdout + checked.stderr
    assert checked.returncode == 0, report
    assert "Configuration file is valid" in report, report
    assert "[WARNING]" not in report, report
    assert "[ALERT]" not in report, report
    return report


@dataclass
class Haproxy:
    directory: Path
    http_port: int
    https_port: int
    process: subprocess.Popen[bytes]
    c_report: str

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def server_states(self) -> dict[str, str]:
        """Each botter server's status from the stats socket (UP, DOWN, "UP 1/2"...)."""
        with socket.socket(socket.AF_UNIX) as stats:
            stats.settimeout(10)
            stats.connect(str(self.directory / "admin.sock"))
            stats.sendall(b"show stat\n")
            received = b""
            while chunk := stats.recv(65536):
                received += chunk
        rows = csv.DictReader(io.StringIO(received.decode().lstrip("# ")))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "botter" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def wait_for_states(self, wanted: dict[str, str]) -> None:
        def reached() -> bool:
            states = self.server_states()
            return all(states.get(name) == status for name, status in wanted.items())

        eventually(reached, CHECK_TIMEOUT_S, f"servers {wanted}")


def render_haproxy_cfg(
    directory: Path, upstream_ports: list[int], acme_port: int, tls: Tls, ports: tuple[int, int]
) -> str:
    http_port, https_port = ports
    substitutions = [
        ("stats socket /run/haproxy/admin.sock", f"stats socket {directory}/admin.sock"),
        ("bind :80\n", f"bind 127.0.0.1:{http_port}\n"),
        ("bind :::80 v6only", "# no IPv6 in the test"),
        (
            "bind :443 ssl crt /etc/haproxy/tls/botter.pem",
            f"bind 127.0.0.1:{https_port} ssl crt {tls.pem}",
        ),
        (
            "bind :::443 v6only ssl crt /etc/haproxy/tls/botter.pem alpn h2,http/1.1",
            "# no IPv6 in the test (https)",
        ),
        ("server acme 127.0.0.1:8888", f"server acme 127.0.0.1:{acme_port}"),
    ]
    substitutions += [
        (f"{name}:3000", f"127.0.0.1:{port}")
        for name, port in zip(SERVERS, upstream_ports, strict=True)
    ]
    rendered = render(SHIPPED.read_text(), substitutions)
    assert ":3000" not in directives(rendered)
    assert "/etc/haproxy" not in directives(rendered)
    return rendered


@contextlib.contextmanager
def running_haproxy(
    directory: Path, upstream_ports: list[int], acme_port: int, tls: Tls
) -> Iterator[Haproxy]:
    http_port, https_port = free_port(), free_port()
    config = directory / "haproxy.cfg"
    config.write_text(
        render_haproxy_cfg(directory, upstream_ports, acme_port, tls, (http_port, https_port))
    )
    report = haproxy_c(config)
    # -db: in the foreground, whatever `daemon` in the file says.
    with (directory / "haproxy.out").open("ab") as out:
        process = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=out, stderr=out)
    try:
        wait_for_port("127.0.0.1", https_port, process, "haproxy")
        wait_for_port("127.0.0.1", http_port, process, "haproxy")
        server = Haproxy(directory, http_port, https_port, process, report)
        server.wait_for_states(dict.fromkeys(SERVERS, "UP"))
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("haproxy-tls"), ["127.0.0.1"])


@pytest.fixture(scope="module")
def haproxy(
    instances: Instances, echo: EchoServer, tls: Tls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Haproxy]:
    """In front of the three instances; ACME challenges go to the echo server."""
    directory = tmp_path_factory.mktemp("haproxy")
    with running_haproxy(directory, instances.ports, echo.port, tls) as server:
        yield server


@pytest.fixture(scope="module")
def haproxy_echo(
    echo: EchoServer, tls: Tls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Haproxy]:
    """The same file with every server pointed at the header-echo server."""
    directory = tmp_path_factory.mktemp("haproxy-echo")
    with running_haproxy(directory, [echo.port] * 3, echo.port, tls) as server:
        yield server


def handshake(port: int, context: ssl.SSLContext) -> tuple[str | None, str | None]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        return wrapped.version(), wrapped.selected_alpn_protocol()


def webhook_posts(haproxy: Haproxy, tls: Tls, count: int) -> list[int]:
    with client(tls) as https:
        return [
            https.post(f"{haproxy.https}{WEBHOOK_PATH}", content=b"{}").status_code
            for _ in range(count)
        ]


# The config itself ------------------------------------------------------------------------


def test_rendered_file_passes_haproxy_c(haproxy: Haproxy) -> None:
    assert "Configuration file is valid" in haproxy.c_report
    assert haproxy.process.poll() is None


def test_health_check_is_http_get_health() -> None:
    text = directives(SHIPPED.read_text())
    assert "option httpchk\n" in text
    assert "http-check send meth GET uri /health" in text
    assert "balance roundrobin" in text
    for name in SERVERS:
        assert f"server {name} {name}:3000 check" in text


# Plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/webhook/telegram/1?a=b", "/.well-known/other", "/"])
def test_http_moves_to_https(haproxy: Haproxy, tls: Tls, path: str) -> None:
    with client(tls) as http:
        answer = http.get(f"{haproxy.http}{path}")
    assert answer.status_code == 301
    assert answer.headers["location"] == f"https://127.0.0.1:{haproxy.http_port}{path}"


def test_acme_challenges_stay_on_http(haproxy: Haproxy, tls: Tls) -> None:
    path = "/.well-known/acme-challenge/token-123"
    with client(tls) as http:
        answer = http.get(f"{haproxy.http}{path}")
    assert answer.status_code == 200  # from the ACME client's listener (the echo server)
    assert answer.json()["path"] == path


# TLS --------------------------------------------------------------------------------------


def test_https_serves_the_combined_pem(haproxy: Haproxy, tls: Tls) -> None:
    versions = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}
    for version, name in versions.items():
        context = tls.context(minimum=version, maximum=version, alpn=["h2", "http/1.1"])
        assert handshake(haproxy.https_port, context) == (name, "h2")
    with client(tls) as https:
        answer = https.post(f"{haproxy.https}{WEBHOOK_PATH}", content=b"{}")
    assert answer.status_code == 401  # botter's answer to a delivery without its secret


def test_tls_1_1_is_refused(haproxy: Haproxy, tls: Tls) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself
        context = tls.context(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as refused:
        handshake(haproxy.https_port, context)
    assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value


def test_probes_are_refused_from_a_public_address(haproxy: Haproxy, tls: Tls) -> None:
    with client(tls) as https:
        for path in ("/health", "/ready", "/metrics"):
            assert https.get(f"{haproxy.https}{path}").status_code == 403, path


# Forwarding -------------------------------------------------------------------------------


def test_forwarding_headers_are_added(haproxy_echo: Haproxy, tls: Tls) -> None:
    """botter shows no request headers, so a header-echo server stands in for it here."""
    headers = {"X-Forwarded-Proto": "http"}
    with client(tls) as https:
        answer = https.post(f"{haproxy_echo.https}{WEBHOOK_PATH}", content=b"{}", headers=headers)
    seen = answer.json()
    assert seen["path"] == WEBHOOK_PATH
    assert header_values(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(seen, "x-forwarded-proto") == ["https"]


def test_roundrobin_spreads_evenly(haproxy: Haproxy, tls: Tls, instances: Instances) -> None:
    before = instances.counts()
    statuses = webhook_posts(haproxy, tls, 30)
    shares = [after - was for after, was in zip(instances.counts(), before, strict=True)]
    assert set(statuses) == {401}
    assert shares == [10, 10, 10]


def test_stopped_instance_is_taken_out_and_requests_keep_succeeding(
    haproxy: Haproxy, tls: Tls, instances: Instances
) -> None:
    stopped = instances.all[2]
    live = instances.all[:2]
    stopped.stop()
    try:
        # Every request is answered by a live instance, before the health check has
        # noticed (a refused connection is redispatched) and after.
        statuses: list[int] = []
        deadline = time.monotonic() + CHECK_TIMEOUT_S
        with client(tls) as https:
            while haproxy.server_states()[SERVERS[2]] != "DOWN":
                assert time.monotonic() < deadline, haproxy.server_states()
                statuses.append(
                    https.post(f"{haproxy.https}{WEBHOOK_PATH}", content=b"{}").status_code
                )
                time.sleep(0.05)
        assert set(statuses) <= {401}, statuses
        assert haproxy.server_states() == {SERVERS[0]: "UP", SERVERS[1]: "UP", SERVERS[2]: "DOWN"}

        before = [instance.requests_on("/webhook/telegram/{bot_id}") for instance in live]
        assert set(webhook_posts(haproxy, tls, 30)) == {401}
        after = [instance.requests_on("/webhook/telegram/{bot_id}") for instance in live]
        assert sum(after) - sum(before) == 30
    finally:
        stopped.start()
        stopped.wait_healthy()
    # Back in rotation once its checks pass again.
    haproxy.wait_for_states(dict.fromkeys(SERVERS, "UP"))
    before_all = instances.counts()
    webhook_posts(haproxy, tls, 30)
    shares = [after - was for after, was in zip(instances.counts(), before_all, strict=True)]
    assert shares == [10, 10, 10]
