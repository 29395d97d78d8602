"""The release drill of docs/operations.md, for real: a blue-green switch under load.

Version A (two `botter serve` instances) runs behind nginx rendered from
deploy/nginx/botter.conf, while a load generator delivers real updates of a registered bot
through nginx the way Telegram does (each update until it is answered 200, retrying a 502,
503, 504 or a dropped connection with growing delays). Version B (two more instances)
starts; the upstream block is re-rendered, first to a canary (A and B, B at a quarter of
the weight) and then to B alone, each time checked with `nginx -t` and applied with
`nginx -s reload`. Once nginx's old workers are gone, A's instances get SIGTERM and must
exit 0. The load keeps running a moment on B, then stops.

What must hold: every update answered 200 is in update_inbox exactly once; no update is
answered 200 twice; every update ends 200 and nothing but 200, 502, 503, 504 or a dropped
connection is ever seen; both versions served deliveries, by their own /metrics.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from botter.db.engine import libpq_url
from tests.conftest import free_port
from tests.deploy.conftest import (
    DEPLOY,
    MAIN_CONF,
    NGINX,
    SECRET_KEY,
    WEBHOOK_ROUTE,
    Bot,
    Instance,
    Tls,
    client,
    directives,
    eventually,
    fresh_source,
    make_tls,
    render,
    wait_for_port,
)

SHIPPED: Final = DEPLOY / "nginx" / "botter.conf"


DRILL_LIMIT_S: Final = 60.0
PHASE_S: Final = 1.5  # load on each arrangement of the upstream
# The load: a few Telegram connections, each from its own address and below the webhook
# zone's 100 r/s per address (Telegram's own addresses are never limited; loopback ones
# are), so nginx never answers 429.
SENDERS: Final = 4
RATE_PER_SENDER: Final = 25.0
# Telegram retries an unanswered delivery for a day; the drill gives each update this long.
RETRY_DEADLINE_S: Final = 15.0
NO_ANSWER: Final = 0  # the connection failed or closed before an answer came
RETRIED: Final = frozenset({502, 503, 504, NO_ANSWER})
A_WEIGHT, B_CANARY_WEIGHT = 3, 1


# nginx ------------------------------------------------------------------------------------


def upstream_params() -> str:
    """The parameters the shipped file gives each server (max_fails, fail_timeout)."""
    match = re.search(r"^\s*server botter-app-1:3000\s+([^;]*);", SHIPPED.read_text(), re.M)
    assert match is not None, "the shipped upstream has no `server botter-app-1:3000` line"
    return match.group(1).strip()


def render_conf(servers: list[tuple[int, int | None]], tls: Tls, http: int, https: int) -> str:
    """The shipped file with its upstream block listing `servers` ((port, weight or None)),
    each with the shipped server parameters, and loopback listen lines and certificates."""
    params = upstream_params()
    listed = "\n    ".join(
        f"server 127.0.0.1:{port}{f' weight={weight}' if weight else ''} {params};"
        for port, weight in servers
    )
    substitutions = [
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen [::]:80;", "# no IPv6 in the test"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
        ("listen [::]:443 ssl http2;", "# no IPv6 in the test (https)"),
        ("/etc/nginx/tls/botter.crt", str(tls.cert)),
        ("/etc/nginx/tls/botter.key", str(tls.key)),
        (f"server botter-app-1:3000 {params};", listed),
        ("server botter-app-2:3000", "# botter-app-2: the list above replaces it"),
        ("server botter-app-3:3000", "# botter-app-3: the list above replaces it"),
    ]
    rendered = render(SHIPPED.read_text(), substitutions)
    assert "botter-app-" not in directives(rendered)
    assert "/etc/nginx" not in directives(rendered)
    return rendered


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines (nginx's titles)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                found[int(entry.name)] = title.decode(errors="replace")
    return found


@dataclass
class Nginx:
    prefix: Path
    tls: Tls
    http_port: int
    https_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def webhook_base(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def _command(self, *extra: str) -> list[str]:
        prefix = f"{self.prefix}/"
        error_log = str(self.prefix / "error.log")
        return [NGINX, "-p", prefix, "-c", str(self.conf), "-e", error_log, *extra]

    def write(self, servers: list[tuple[int, int | None]]) -> None:
        """Render the upstream to `servers` and check the result as an operator would."""
        (self.prefix / "conf.d").mkdir(parents=True, exist_ok=True)
        rendered = render_conf(servers, self.tls, self.http_port, self.https_port)
        (self.prefix / "conf.d" / "botter.conf").write_text(rendered)
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf.write_text(MAIN_CONF.format(prefix=self.prefix, user=user))
        checked = subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        assert "test is successful" in checked.stderr, checked.stderr
        assert "[warn]" not in checked.stderr, checked.stderr

    def start(self, servers: list[tuple[int, int | None]]) -> None:
        self.write(servers)
        with (self.prefix / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(self._command(), stdout=out, stderr=out)
        wait_for_port("127.0.0.1", self.https_port, self.process, "nginx")
        eventually(lambda: (self.prefix / "nginx.pid").exists(), 10, "nginx's pid file")

    def workers(self) -> dict[int, str]:
        assert self.process is not None
        return children(self.process.pid)

    def switch(self, servers: list[tuple[int, int | None]]) -> None:
        """Re-render the upstream, `nginx -t`, `nginx -s reload`, and wait until the old
        workers have finished what they had in hand and exited: from then on every
        request follows the new upstream."""
        old = set(self.workers())
        self.write(servers)
        reload = subprocess.run(
            self._command("-s", "reload"), capture_output=True, text=True, timeout=30
        )
        assert reload.returncode == 0, reload.stderr

        def only_new_workers() -> bool:
            workers = self.workers()
            fresh = {pid: title for pid, title in workers.items() if pid not in old}
            return bool(fresh) and len(fresh) == len(workers)

        eventually(only_new_workers, 20, "nginx's old workers to exit after the reload")
        errors = (self.prefix / "error.log").read_text()
        assert "[emerg]" not in errors, errors

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# botter instances -------------------------------------------------------------------------


def webhook_answers(instance: Instance) -> Counter[int]:
    """The instance's own count of webhook answers by HTTP status, from its /metrics."""
    text = httpx.get(f"{instance.url}/metrics", timeout=10).text
    answers: Counter[int] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "botter_http_request_duration_seconds_count"
                and sample.labels.get("route") == WEBHOOK_ROUTE
            ):
                answers[int(sample.labels["status"])] += int(sample.value)
    return answers


def log_tail(instance: Instance, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(instance.log_path.read_text().splitlines()[-lines:])
    return ""


def start_version(env: dict[str, str], log_dir: Path, name: str) -> list[Instance]:
    started = [Instance(free_port(), env, log_dir / f"{name}-{n}.log") for n in (1, 2)]
    for instance in started:
        instance.start()
    for instance in started:
        instance.wait_healthy()
        # What an operator waits for before sending traffic: PostgreSQL reachable.
        ready = httpx.get(f"{instance.url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
    return started


# The load: Telegram's deliveries ----------------------------------------------------------


@dataclass
class Delivery:
    """One update and every answer its delivery attempts got, in order."""

    update_id: int
    answers: list[int] = field(default_factory=list)


class Load:
    """`SENDERS` threads, each a kept-alive HTTPS connection from its own address, each
    delivering new updates at `RATE_PER_SENDER`, every update retried until it is
    answered 200 or `RETRY_DEADLINE_S` passes."""

    def __init__(self, url: str, bot: Bot, tls: Tls) -> None:
        self.url = url
        self.bot = bot
        self.tls = tls
        self.deliveries: list[Delivery] = []
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, name=f"telegram-{n}", daemon=True)
            for n in range(SENDERS)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=RETRY_DEADLINE_S + 15)
        assert not any(thread.is_alive() for thread in self._threads), "a sender hung"

    def answered(self) -> int:
        with self._lock:
            return len(self.deliveries)

    def _send(self) -> None:
        try:
            with client(self.tls, fresh_source(), timeout_s=10) as https:
                next_at = time.monotonic()
                while not self._stop.is_set():
                    delivery = self._deliver(https)
                    with self._lock:
                        self.deliveries.append(delivery)
                    next_at += 1 / RATE_PER_SENDER
                    time.sleep(max(0.0, next_at - time.monotonic()))
        except BaseException as error:
            self.failures.append(error)

    def _deliver(self, https: httpx.Client) -> Delivery:
        body = self.bot.update()
        delivery = Delivery(json.loads(body)["update_id"])
        deadline = time.monotonic() + RETRY_DEADLINE_S
        delay_s = 0.05
        while True:
            try:
                answer = https.post(
                    f"{self.url}{self.bot.path}", content=body, headers=self.bot.headers
                )
                status = answer.status_code
            except httpx.TransportError:
                status = NO_ANSWER
            delivery.answers.append(status)
            if status not in RETRIED or time.monotonic() > deadline:
                return delivery
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.5)


# The drill --------------------------------------------------------------------------------


@pytest.fixture
def drill_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BOTTER_SECRET_KEYS": SECRET_KEY,
        "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "BOTTER_DATA_DIR": str(tmp_path / "data"),
        "DB_POOL_SIZE": "4",
    }


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Nginx]:
    tls = make_tls(tmp_path / "tls", ["127.0.0.1"])
    server = Nginx(tmp_path / "nginx", tls, free_port(), free_port())
    try:
        yield server
    finally:
        server.stop()


def stored_counts(database_url: str, bot_id: int, update_ids: list[int]) -> dict[int, int]:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT update_id, count(*) FROM update_inbox"
            " WHERE bot_id = %s AND update_id = ANY(%s) GROUP BY update_id",
            (bot_id, update_ids),
        ).fetchall()
    return {int(update_id): int(count) for update_id, count in rows}


@pytest.mark.slow
@pytest.mark.timeout(DRILL_LIMIT_S)
def test_blue_green_release_under_load_loses_and_doubles_nothing(
    drill_env: dict[str, str], database_url: str, bot: Bot, proxy: Nginx, tmp_path: Path
) -> None:
    started_s = time.monotonic()
    blue: list[Instance] = []
    green: list[Instance] = []
    load: Load | None = None
    try:
        # Version A serves all traffic.
        blue = start_version(drill_env, tmp_path, "A")
        proxy.start([(instance.port, None) for instance in blue])
        load = Load(proxy.webhook_base, bot, proxy.tls)
        load.start()
        time.sleep(PHASE_S)

        # Version B starts beside it, under load, and is ready before it gets traffic.
        green = start_version(drill_env, tmp_path, "B")
        time.sleep(PHASE_S)

        # Canary: B takes a quarter of the new requests.
        proxy.switch(
            [(instance.port, A_WEIGHT) for instance in blue]
            + [(instance.port, B_CANARY_WEIGHT) for instance in green]
        )
        time.sleep(PHASE_S)
        assert sum(sum(webhook_answers(instance).values()) for instance in green) > 0

        # Blue-green: B takes everything; the old nginx workers finish and exit.
        proxy.switch([(instance.port, None) for instance in green])
        blue_answers = [webhook_answers(instance) for instance in blue]
        time.sleep(0.5)
        # Drained: nothing reaches A any more.
        assert [webhook_answers(instance) for instance in blue] == blue_answers

        # A stops as it would in a release: SIGTERM, finish what is in hand, exit 0.
        for instance in blue:
            assert instance.process is not None
            instance.process.send_signal(signal.SIGTERM)
        for instance in blue:
            assert instance.process is not None
            code = instance.process.wait(timeout=30)
            assert code == 0, f"{instance.log_path.name} exited {code}\n{log_tail(instance)}"

        answered_before_stop = load.answered()
        time.sleep(PHASE_S)
        load.stop()
        assert load.answered() > answered_before_stop, "the load stopped with version A"
        green_answers = [webhook_answers(instance) for instance in green]
    finally:
        if load is not None:
            with contextlib.suppress(AssertionError):
                load.stop()
        for instance in blue + green:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.terminate()
        for instance in blue + green:
            instance.stop()
    drill_s = time.monotonic() - started_s

    assert not load.failures, load.failures
    deliveries = load.deliveries
    answers = Counter(status for delivery in deliveries for status in delivery.answers)
    print(
        f"release drill: {len(deliveries)} updates in {drill_s:.1f} s, answers {dict(answers)}"
        f"; A answered {[dict(a) for a in blue_answers]}, B {[dict(a) for a in green_answers]}"
    )
    assert drill_s < DRILL_LIMIT_S
    assert len(deliveries) >= SENDERS * RATE_PER_SENDER * PHASE_S, "the load was not steady"

    # Only what Telegram retries, and every update ends 200, exactly once.
    assert set(answers) <= RETRIED | {200}, answers
    unfinished = [d for d in deliveries if d.answers[-1] != 200]
    assert not unfinished, unfinished[:10]
    assert all(delivery.answers.count(200) == 1 for delivery in deliveries)
    update_ids = [delivery.update_id for delivery in deliveries]
    assert len(set(update_ids)) == len(update_ids), "the load sent an update_id twice"

    # Every update answered 200 is in the inbox, once.
    stored = stored_counts(database_url, bot.id, update_ids)
    missing = [update_id for update_id in update_ids if update_id not in stored]
    assert not missing, f"{len(missing)} acknowledged updates are not in the inbox"
    assert set(stored.values()) == {1}, {k: n for k, n in stored.items() if n != 1}

    # Both versions served, and their own counts add up to the 200s Telegram saw.
    blue_200 = sum(answer[200] for answer in blue_answers)
    green_200 = sum(answer[200] for answer in green_answers)
    assert blue_200 > 0, blue_answers
    assert green_200 > 0, green_answers
    assert blue_200 + green_200 == answers[200], (blue_200, green_200, answers[200])
    served = blue_answers + green_answers
    assert set().union(*served) <= RETRIED | {200}, served
