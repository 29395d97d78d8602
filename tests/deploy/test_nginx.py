"""deploy/nginx/botter.conf, run by Debian's nginx in front of three `botter serve`."""

import contextlib
import fcntl
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.conftest import free_port
from tests.deploy.conftest import (
    DEPLOY,
    MAIN_CONF,
    NGINX,
    WEBHOOK_PATH,
    Bot,
    EchoServer,
    Instances,
    Tls,
    client,
    directives,
    fresh_source,
    header_values,
    make_tls,
    render,
    upstream_connections,
    wait_for_port,
)

SHIPPED: Final = DEPLOY / "nginx" / "botter.conf"
INTERNAL_PATHS: Final = ("/health", "/ready", "/metrics")


def nginx_t(prefix: Path, conf: Path) -> str:
    """`nginx -t` on `conf`; its report, which must be a clean pass."""
    checked = subprocess.run(
        [NGINX, "-t", "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = checked.stderr
    assert checked.returncode == 0, report
    assert "test is successful" in report, report
    assert "[warn]" not in report, report
    assert "[emerg]" not in report, report
    return report


def render_botter_conf(
    upstream_ports: list[int], tls: Tls, http_port: int, https_listen: list[str]
) -> str:
    https = "\n    ".join(f"listen {address} ssl http2;" for address in https_listen)
    substitutions = [
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen [::]:80;", "# no IPv6 in the test"),
        ("listen 443 ssl http2;", https),
        ("listen [::]:443 ssl http2;", "# no IPv6 in the test (https)"),
        ("/etc/nginx/tls/botter.crt", str(tls.cert)),
        ("/etc/nginx/tls/botter.key", str(tls.key)),
    ]
    substitutions += [
        (f"server botter-app-{number}:3000", f"server 127.0.0.1:{port}")
        for number, port in enumerate(upstream_ports, start=1)
    ]
    rendered = render(SHIPPED.read_text(), substitutions)
    assert "botter-app-" not in directives(rendered)
    assert "/etc/nginx" not in directives(rendered)
    return rendered


@dataclass
class Nginx:
    prefix: Path
    http_port: int
    https_port: int
    process: subprocess.Popen[bytes]
    t_report: str

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@contextlib.contextmanager
def running_nginx(
    prefix: Path, upstream_ports: list[int], tls: Tls, extra_hosts: tuple[str, ...] = ()
) -> Iterator[Nginx]:
    http_port, https_port = free_port(), free_port()
    https_listen = [f"{host}:{https_port}" for host in ("127.0.0.1", *extra_hosts)]
    (prefix / "conf.d").mkdir(parents=True)
    (prefix / "conf.d" / "botter.conf").write_text(
        render_botter_conf(upstream_ports, tls, http_port, https_listen)
    )
    # Workers run as root here so they can use the temporary directories (mode 0700).
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(MAIN_CONF.format(prefix=prefix, user=user))
    report = nginx_t(prefix, conf)
    command = [NGINX, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
    with (prefix / "nginx.out").open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=out)
    try:
        wait_for_port("127.0.0.1", https_port, process, "nginx")
        wait_for_port("127.0.0.1", http_port, process, "nginx")
        yield Nginx(prefix, http_port, https_port, process, report)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# An internal network: a namespace behind a veth pair ----------------------------------------

NETNS_PREFIX: Final = "botter-deploy-"
NETNS_LOCK: Final = Path(tempfile.gettempdir()) / "botter-deploy-netns.lock"

# Runs inside the namespace with the standard library only: `count` requests spread over
# `concurrency` keep-alive connections from address `source`; prints the status counts.
NETNS_CLIENT: Final = """
import collections, concurrent.futures, http.client, json, ssl, sys, time
spec = json.loads(sys.argv[1])
context = ssl.create_default_context(cafile=spec["cafile"])
def connect():
    return http.client.HTTPSConnection(
        spec["host"], spec["port"], context=context,
        source_address=(spec["source"], 0), timeout=60)
def run(count):
    statuses = collections.Counter()
    connection, reused, done = None, False, 0
    deadline = time.monotonic() + 30
    while done < count:
        if connection is None:
            connection, reused = connect(), False
        try:
            body = b"{}" if spec["method"] == "POST" else None
            headers = {"Content-Type": "application/json"} if body else {}
            connection.request(spec["method"], spec["path"], body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
        except OSError:
            connection.close()
            connection = None
            # A server may close a kept-alive connection at any moment (nginx does when an
            # upstream answered before reading the whole body, as botter's 401 does): send
            # the request again on a new connection, as HTTP clients do.
            if reused:
                continue
            # A new connection fails only while the link comes up.
            if done == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise
        statuses[answer.status] += 1
        done += 1
        reused = True
        if answer.will_close:
            connection.close()
            connection = None
    return statuses
shares = [spec["count"] // spec["concurrency"]] * spec["concurrency"]
shares[0] += spec["count"] % spec["concurrency"]
started = time.monotonic()
with concurrent.futures.ThreadPoolExecutor(spec["concurrency"]) as pool:
    total = sum(pool.map(run, shares), collections.Counter())
print(json.dumps({"statuses": total, "elapsed_s": time.monotonic() - started}))
"""


def ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass(frozen=True)
class InternalNet:
    """Namespace `name` reaches this host at `host_ip` (in 10.0.0.0/8) from `ns_ip`, and
    also holds one address in each of Telegram's two webhook delivery networks."""

    name: str
    host_ip: str
    ns_ip: str
    telegram_ips: tuple[str, str]

    def requests(
        self,
        tls: Tls,
        port: int,
        source: str,
        path: str,
        method: str = "GET",
        count: int = 1,
        concurrency: int = 1,
    ) -> tuple[Counter[int], float]:
        """Status counts of `count` requests to https://host_ip:port/path from `source`."""
        spec = {
            "host": self.host_ip,
            "port": port,
            "cafile": str(tls.cert),
            "source": source,
            "method": method,
            "path": path,
            "count": count,
            "concurrency": concurrency,
        }
        command = ["ip", "netns", "exec", self.name, sys.executable, "-c", NETNS_CLIENT]
        done = subprocess.run(
            [*command, json.dumps(spec)], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        statuses = Counter({int(status): n for status, n in answer["statuses"].items()})
        return statuses, float(answer["elapsed_s"])


def _reap_stale_namespaces() -> None:
    """Namespaces left behind by test processes that died without cleaning up."""
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        match = re.fullmatch(rf"{NETNS_PREFIX}(\d+)-\d+", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            ip("netns", "delete", name)


@pytest.fixture(scope="module")
def internal_net() -> Iterator[InternalNet]:
    """The brief's 10.213.0.1/24 (host) and 10.213.0.2/24 (namespace); the third octet
    moves on when another test process already uses 10.213.0.0/24 (pytest -n, a second
    run), so parallel workers never share a subnet."""
    pid = os.getpid()
    with NETNS_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _reap_stale_namespaces()
        in_use = set(re.findall(r"inet 10\.213\.(\d+)\.", ip("-o", "-4", "addr")))
        number = next(n for n in range(255) if str(n) not in in_use)
        net = InternalNet(
            name=f"{NETNS_PREFIX}{pid}-{number}",
            host_ip=f"10.213.{number}.1",
            ns_ip=f"10.213.{number}.2",
            telegram_ips=(f"149.154.167.{number + 1}", f"91.108.4.{number + 1}"),
        )
        host_if, ns_if = f"bdh{pid}-{number}"[:15], f"bdn{pid}-{number}"[:15]
        ip("netns", "add", net.name)
        try:
            ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", ns_if, "netns", net.name)
            ip("addr", "add", f"{net.host_ip}/24", "dev", host_if)
            ip("link", "set", host_if, "up")
            inside = ("netns", "exec", net.name, "ip")
            ip(*inside, "addr", "add", f"{net.ns_ip}/24", "dev", ns_if)
            for address in net.telegram_ips:
                ip(*inside, "addr", "add", f"{address}/32", "dev", ns_if)
            ip(*inside, "link", "set", "lo", "up")
            ip(*inside, "link", "set", ns_if, "up")
            for address in net.telegram_ips:
                ip("route", "add", f"{address}/32", "via", net.ns_ip, "dev", host_if)
        except BaseException:
            ip("netns", "delete", net.name)
            raise
    try:
        yield net
    finally:
        # Deleting the namespace deletes the veth pair, and the routes with it.
        ip("netns", "delete", net.name)


# Fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory, internal_net: InternalNet) -> Tls:
    return make_tls(tmp_path_factory.mktemp("nginx-tls"), ["127.0.0.1", internal_net.host_ip])


@pytest.fixture(scope="module")
def nginx(
    instances: Instances,
    tls: Tls,
    internal_net: InternalNet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Nginx]:
    prefix = tmp_path_factory.mktemp("nginx")
    with running_nginx(prefix, instances.ports, tls, (internal_net.host_ip,)) as server:
        yield server


@pytest.fixture(scope="module")
def nginx_echo(
    echo: EchoServer, tls: Tls, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """The same file with every upstream server pointed at the header-echo server."""
    prefix = tmp_path_factory.mktemp("nginx-echo")
    with running_nginx(prefix, [echo.port] * 3, tls) as server:
        yield server


def handshake(
    tls: Tls, port: int, context: ssl.SSLContext | None = None
) -> tuple[str | None, str | None, str | None]:
    """(TLS version, cipher, ALPN protocol) of a handshake with 127.0.0.1:port."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        (context or tls.context()).wrap_socket(raw, server_hostname="127.0.0.1") as wrapped,
    ):
        cipher = wrapped.cipher()
        return wrapped.version(), cipher[0] if cipher else None, wrapped.selected_alpn_protocol()


def shipped_ciphers() -> list[str]:
    match = re.search(r"^\s*ssl_ciphers\s+([^;]+);", SHIPPED.read_text(), re.MULTILINE)
    assert match is not None
    return match.group(1).split(":")


# The config itself ------------------------------------------------------------------------


def test_rendered_file_passes_nginx_t(nginx: Nginx) -> None:
    assert "syntax is ok" in nginx.t_report
    assert nginx.process.poll() is None


def test_drops_into_debians_nginx_conf(tmp_path: Path) -> None:
    """An http-context file: inside Debian's own nginx.conf (which sets ssl_protocols,
    gzip, logs... at http level) it adds nothing that clashes, and its listen lines pass
    as shipped. Only the upstream names and certificate paths are changed."""
    tls = make_tls(tmp_path / "tls", ["127.0.0.1"])
    (tmp_path / "conf.d").mkdir()
    substitutions = [
        ("/etc/nginx/tls/botter.crt", str(tls.cert)),
        ("/etc/nginx/tls/botter.key", str(tls.key)),
    ]
    substitutions += [
        (f"server botter-app-{n}:3000", f"server 127.0.0.1:{3000 + n}") for n in (1, 2, 3)
    ]
    (tmp_path / "conf.d" / "botter.conf").write_text(render(SHIPPED.read_text(), substitutions))
    debian = Path("/etc/nginx/nginx.conf").read_text()
    main = render(
        debian,
        [
            ("include /etc/nginx/conf.d/*.conf;", f"include {tmp_path}/conf.d/*.conf;"),
            ("pid /run/nginx.pid;", f"pid {tmp_path}/nginx.pid;"),
            ("error_log /var/log/nginx/error.log;", f"error_log {tmp_path}/error.log;"),
            ("access_log /var/log/nginx/access.log;", f"access_log {tmp_path}/access.log;"),
        ],
    )
    (tmp_path / "nginx.conf").write_text(main)
    nginx_t(tmp_path, tmp_path / "nginx.conf")


def test_ciphers_are_all_known_to_openssl() -> None:
    """nginx accepts a cipher list as long as one name is valid; check each one."""
    ciphers = shipped_ciphers()
    assert len(ciphers) >= 4
    for name in ciphers:
        assert name.startswith(("ECDHE-", "DHE-")), f"{name} is not forward secret"
        ssl.create_default_context().set_ciphers(name)  # raises SSLError if unknown


# Plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_http_moves_to_https(nginx: Nginx, tls: Tls, method: str) -> None:
    with client(tls) as http:
        answer = http.request(method, f"{nginx.http}/webhook/telegram/1?a=b", content=b"{}")
    assert answer.status_code == 301
    assert answer.headers["location"] == "https://127.0.0.1/webhook/telegram/1?a=b"


# TLS and HTTP/2 ---------------------------------------------------------------------------


def test_tls_1_2_and_1_3_handshakes(nginx: Nginx, tls: Tls) -> None:
    v12 = tls.context(minimum=ssl.TLSVersion.TLSv1_2, maximum=ssl.TLSVersion.TLSv1_2)
    version, cipher, _ = handshake(tls, nginx.https_port, v12)
    assert version == "TLSv1.2"
    assert cipher in shipped_ciphers()
    v13 = tls.context(minimum=ssl.TLSVersion.TLSv1_3, maximum=ssl.TLSVersion.TLSv1_3)
    assert handshake(tls, nginx.https_port, v13)[0] == "TLSv1.3"


def test_tls_1_1_is_refused_by_the_server(nginx: Nginx, tls: Tls) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 itself
        context = tls.context(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    # Let this client really offer TLS 1.1 (OpenSSL 3 refuses it at its default level), so
    # the refusal can only come from nginx.
    context.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError) as refused:
        handshake(tls, nginx.https_port, context)
    assert "PROTOCOL_VERSION" in str(refused.value).upper(), refused.value


def test_weak_cipher_is_refused(nginx: Nginx, tls: Tls) -> None:
    """No forward secrecy, no CBC: a client offering only AES128-SHA gets no handshake."""
    context = tls.context(maximum=ssl.TLSVersion.TLSv1_2)
    context.set_ciphers("AES128-SHA")
    with pytest.raises(ssl.SSLError, match=r"(?i)handshake failure"):
        handshake(tls, nginx.https_port, context)


def test_http2_is_negotiated_by_alpn(nginx: Nginx, tls: Tls) -> None:
    assert handshake(tls, nginx.https_port, tls.context(alpn=["h2", "http/1.1"]))[2] == "h2"
    assert handshake(tls, nginx.https_port, tls.context(alpn=["http/1.1"]))[2] == "http/1.1"


# Bodies -----------------------------------------------------------------------------------


def test_body_over_10m_is_refused_by_nginx(nginx: Nginx, tls: Tls, instances: Instances) -> None:
    before = instances.counts()
    with client(tls, fresh_source()) as https:
        answer = https.post(f"{nginx.https}{WEBHOOK_PATH}", content=b"x" * (11 * 1024 * 1024))
    assert answer.status_code == 413
    assert "nginx" in answer.text  # nginx's own page: no instance saw it
    assert instances.counts() == before


def test_body_under_10m_passes_nginx(nginx: Nginx, tls: Tls, instances: Instances) -> None:
    before = instances.counts("unmatched")
    with client(tls, fresh_source()) as https:
        answer = https.post(f"{nginx.https}/upload", content=b"x" * (9 * 1024 * 1024))
    assert answer.status_code == 404  # the app's answer for a route it does not have
    assert sum(instances.counts("unmatched")) == sum(before) + 1


# Probes and metrics: internal networks only ------------------------------------------------


@pytest.mark.parametrize("path", INTERNAL_PATHS)
def test_probes_are_refused_from_a_public_address(nginx: Nginx, tls: Tls, path: str) -> None:
    """127.0.0.1 is not one of the internal networks."""
    with client(tls) as https:
        answer = https.get(f"{nginx.https}{path}")
    assert answer.status_code == 403
    assert "nginx" in answer.text


def test_probes_answer_an_internal_network(
    nginx: Nginx, tls: Tls, internal_net: InternalNet
) -> None:
    for path in INTERNAL_PATHS:
        statuses, _ = internal_net.requests(tls, nginx.https_port, internal_net.ns_ip, path)
        assert statuses == {200: 1}, path
    telegram_ip = internal_net.telegram_ips[0]
    statuses, _ = internal_net.requests(tls, nginx.https_port, telegram_ip, "/metrics")
    assert statuses == {403: 1}


# Rate limits ------------------------------------------------------------------------------


def send(https: httpx.Client, method: str, url: str, attempts: int = 5) -> httpx.Response:
    """One request, sent again if the server closed the kept-alive connection just as it
    went out (nginx closes it after an upstream answered before reading the whole body,
    as botter's 401 does); httpx only notices a close that came earlier."""
    for _ in range(attempts - 1):
        with contextlib.suppress(httpx.RemoteProtocolError):
            return https.request(method, url, content=b"{}")
    return https.request(method, url, content=b"{}")


def burst(
    nginx: Nginx, tls: Tls, method: str, path: str, count: int
) -> tuple[Counter[int], float]:
    """`count` back-to-back requests from a fresh client address."""
    statuses: Counter[int] = Counter()
    with client(tls, fresh_source()) as https:
        started = time.monotonic()
        for _ in range(count):
            statuses[send(https, method, f"{nginx.https}{path}").status_code] += 1
        return statuses, time.monotonic() - started


@pytest.mark.parametrize(
    ("path", "burst_size", "rate_per_s", "app_status"),
    [("/", 10, 5, 404), ("/api/plans", 20, 10, 404)],
)
def test_zone_answers_429_beyond_its_burst(
    nginx: Nginx, tls: Tls, path: str, burst_size: int, rate_per_s: int, app_status: int
) -> None:
    statuses, elapsed_s = burst(nginx, tls, "GET", path, 60)
    assert set(statuses) == {app_status, 429}, statuses
    passed = statuses[app_status]
    # The first request and the burst pass at once (nodelay); the zone refills at its rate.
    assert burst_size + 1 <= passed <= burst_size + 1 + rate_per_s * elapsed_s + 1, statuses


def test_webhook_zone_allows_what_the_general_zone_refuses(nginx: Nginx, tls: Tls) -> None:
    general, _ = burst(nginx, tls, "GET", "/", 60)
    webhook, _ = burst(nginx, tls, "POST", WEBHOOK_PATH, 60)
    assert general[429] > 0
    assert webhook == {401: 60}  # every one reached the app, which refused the secret


def test_telegram_delivery_addresses_are_never_limited(
    nginx: Nginx, tls: Tls, internal_net: InternalNet
) -> None:
    def fire(source: str) -> Counter[int]:
        statuses, _ = internal_net.requests(
            tls, nginx.https_port, source, WEBHOOK_PATH, "POST", count=600, concurrency=12
        )
        return statuses

    other = fire(internal_net.ns_ip)
    # The webhook zone limits any other address: its burst passes, the rest is refused.
    assert other[401] >= 201, other
    assert other[429] > 0, other
    for telegram_ip in internal_net.telegram_ips:
        assert fire(telegram_ip) == {401: 600}, telegram_ip


# Upstream ---------------------------------------------------------------------------------


def test_upstream_connections_are_kept_alive(
    nginx: Nginx, tls: Tls, instances: Instances, bot: Bot
) -> None:
    """Telegram's deliveries, each recorded by an instance, share a few upstream
    connections. (An instance that refuses a delivery before reading its body, as its 401
    does, makes nginx drop that connection: only then can it not be reused.)"""
    deliveries = 200
    before_counts = instances.counts()
    before = upstream_connections(instances.ports)
    statuses: Counter[int] = Counter()
    with client(tls, fresh_source()) as https:
        for _ in range(deliveries):
            answer = https.post(
                f"{nginx.https}{bot.path}", content=bot.update(), headers=bot.headers
            )
            statuses[answer.status_code] += 1
    opened = upstream_connections(instances.ports) - before
    assert statuses == {200: deliveries}
    assert sum(instances.counts()) - sum(before_counts) == deliveries
    # One worker, three instances: a few connections carry all the requests. Without
    # keep-alive (Connection: close upstream) there would be one per request.
    assert len(opened) <= 6, sorted(opened)


def test_least_conn_spreads_over_all_instances(
    nginx: Nginx, tls: Tls, instances: Instances
) -> None:
    before = instances.counts()
    statuses, _ = burst(nginx, tls, "POST", WEBHOOK_PATH, 60)
    shares = [after - was for after, was in zip(instances.counts(), before, strict=True)]
    assert statuses == {401: 60}
    assert sum(shares) == 60
    assert min(shares) >= 10, shares


@pytest.mark.parametrize("path", [WEBHOOK_PATH, "/api/plans", "/"])
def test_upstream_sees_the_forwarding_headers(
    nginx_echo: Nginx, tls: Tls, echo: EchoServer, path: str
) -> None:
    """botter shows no request headers, so a header-echo server stands in for it here."""
    source = fresh_source()
    headers = {
        "Host": "botter.example.com",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "http",  # a client cannot pose as plain http
    }
    with client(tls, source) as https:
        answer = https.post(f"{nginx_echo.https}{path}", content=b"{}", headers=headers)
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["path"] == path
    assert header_values(seen, "host") == ["botter.example.com"]
    assert header_values(seen, "x-real-ip") == [source]
    assert header_values(seen, "x-forwarded-for") == [f"203.0.113.7, {source}"]
    assert header_values(seen, "x-forwarded-proto") == ["https"]
    # No Connection header: HTTP/1.1 keeps the upstream connection open.
    assert header_values(seen, "connection") == []
    assert header_values(seen, "upgrade") == []


def test_upgrade_requests_are_passed_on(nginx_echo: Nginx, tls: Tls) -> None:
    headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
    with client(tls, fresh_source()) as https:
        answer = https.get(f"{nginx_echo.https}/api/stream", headers=headers)
    seen: dict[str, Any] = answer.json()
    assert header_values(seen, "connection") == ["upgrade"]
    assert header_values(seen, "upgrade") == ["websocket"]
