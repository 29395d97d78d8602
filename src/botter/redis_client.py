"""Reaching Redis from REDIS_URL, whether it names one server, a Sentinel service or a Cluster.

    redis://[[username]:password@]host:port/db       one server (also rediss:// and unix://)
    redis+sentinel://[[username]:password@]host:port[,host:port...]/service_name[/db]
        [?sentinel_password=...]
    redis+cluster://[[username]:password@]host:port[,host:port...]

With Sentinel, the hosts are the sentinels (port 26379 when left out); the credentials are
the Redis servers', and sentinels that require a password of their own take it from
`sentinel_password`. With Cluster, the hosts are any of its nodes (port 6379 when left out);
the client learns the rest, and there is only database 0.
"""

import urllib.parse
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, cast

from redis.asyncio import Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode

SERVER_SCHEMES: Final = ("redis", "rediss", "unix")
SENTINEL_SCHEME: Final = "redis+sentinel"
CLUSTER_SCHEME: Final = "redis+cluster"
DEFAULT_PORTS: Final = {SENTINEL_SCHEME: 26379, CLUSTER_SCHEME: 6379}

Kind = Literal["server", "sentinel", "cluster"]


@dataclass(frozen=True)
class RedisTarget:
    """What a REDIS_URL names, taken apart."""

    kind: Kind
    url: str = field(repr=False)
    nodes: tuple[tuple[str, int], ...] = ()
    service_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    def locations(self) -> str:
        """The nodes as `host:port,host:port`, the form limits' storage URLs take."""
        return ",".join(
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in self.nodes
        )

    def credentials(self) -> dict[str, Any]:
        """Keyword arguments for connections to the Redis servers."""
        return {"username": self.username, "password": self.password}

    def sentinel_kwargs(self, timeout_s: float) -> dict[str, Any]:
        """Keyword arguments for connections to the sentinels themselves."""
        return {
            "username": None,
            "password": self.sentinel_password,
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
        }


def parse_redis_url(url: str) -> RedisTarget:
    """Take REDIS_URL apart; ValueError with one line saying what is wrong (never a secret)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme in SERVER_SCHEMES:
        return RedisTarget("server", url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ValueError(
            "must be a redis:// URL (or rediss://, unix://, redis+sentinel://, redis+cluster://)"
        )
    parts = urllib.parse.urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, _, password = (urllib.parse.unquote(part) for part in userinfo.partition(":"))
    if not hosts:
        raise ValueError(f"a {scheme}:// URL needs at least one host:port")
    base = RedisTarget(
        "cluster" if scheme == CLUSTER_SCHEME else "sentinel",
        url,
        tuple(_node(location, DEFAULT_PORTS[scheme]) for location in hosts.split(",")),
        username=username or None,
        password=password or None,
    )
    options = urllib.parse.parse_qs(parts.query)
    if base.kind == "cluster":
        if parts.path.strip("/") not in ("", "0") or options:
            raise ValueError("a redis+cluster:// URL takes no database and no options")
        return base
    return _sentinel_target(base, parts.path, options)


def _sentinel_target(base: RedisTarget, path: str, options: dict[str, list[str]]) -> RedisTarget:
    service_name, _, db = path.strip("/").partition("/")
    if not service_name:
        raise ValueError("a redis+sentinel:// URL needs the service name: /service_name[/db]")
    if db and not db.isdigit():
        raise ValueError(f"the database of a redis+sentinel:// URL is a number, not {db!r}")
    if set(options) - {"sentinel_password"}:
        raise ValueError("the only option of a redis+sentinel:// URL is sentinel_password")
    sentinel_password = options.get("sentinel_password", [""])[-1] or None
    return replace(
        base, service_name=service_name, db=int(db or 0), sentinel_password=sentinel_password
    )


def _node(location: str, default_port: int) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(f"//{location.strip()}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"{location!r} is not host:port") from None
    if not parts.hostname:
        raise ValueError(f"{location!r} is not host:port")
    return parts.hostname, port


class SentinelMaster(Redis):
    """The master of a Sentinel service, looked up again after a failover.

    Closing it also closes the connections to the sentinels, which redis-py leaves open.
    """

    sentinel_clients: tuple[Redis, ...] = ()

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for client in self.sentinel_clients:
            await client.aclose()


def connect_redis(url: str, *, timeout_s: float, max_connections: int | None = None) -> Redis:
    """A client for whatever REDIS_URL names; nothing is connected until the first command.

    A Cluster client is not a `Redis` subclass, but it answers every command botter sends
    the same way: single-key commands, scripts whose keys share a hash tag (see
    redis_keys), PING, and INFO (from one node). It is typed as `Redis` so that callers
    need not care which kind they hold. `max_connections` bounds the pool (per node on a
    Cluster); None leaves redis-py's default, which is unbounded.
    """
    target = parse_redis_url(url)
    timeouts: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    pool: dict[str, Any] = {} if max_connections is None else {"max_connections": max_connections}
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.nodes]
        cluster = RedisCluster(startup_nodes=nodes, **target.credentials(), **timeouts, **pool)
        return cast(Redis, cluster)
    if target.kind == "sentinel":
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            list(target.nodes),
            sentinel_kwargs=target.sentinel_kwargs(timeout_s),
            db=target.db,
            **target.credentials(),
            **timeouts,
        )
        master: SentinelMaster = sentinel.master_for(
            target.service_name, redis_class=SentinelMaster, **pool
        )
        master.sentinel_clients = tuple(sentinel.sentinels)
        return master
    return Redis.from_url(url, **timeouts, **pool)
