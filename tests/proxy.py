"""A TCP proxy for fault tests: put it in front of PostgreSQL or Redis, then make the
server "go away" and come back without restarting it.

    async with TcpProxy.in_front_of(database_url) as proxy:
        url = proxy.url(database_url)  # give this URL to the code under test
        proxy.cut()        # a crash: live connections are reset, new ones too
        proxy.blackhole()  # a partition: nothing passes either way, nothing fails fast
        proxy.restore()    # back to forwarding

The proxy runs in the event loop that started it; call its methods from there.
"""

import asyncio
import contextlib
import socket
import struct
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

_CHUNK_BYTES = 64 * 1024


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a crashed server or a dropped route looks to its client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_host`:`target_port`, until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.accepted = 0  # connections forwarded to the target so far
        self._server: asyncio.Server | None = None
        self._cut = False
        # Clear while blackholed: every pump and every new connection waits on it.
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @classmethod
    def in_front_of(cls, url: str) -> "TcpProxy":
        """A proxy for the server of `url` (postgresql://, redis://, http://...)."""
        parts = urlsplit(url)
        if parts.hostname is None or parts.port is None:
            raise ValueError("the URL needs an explicit host and port")
        return cls(parts.hostname, parts.port)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def live(self) -> int:
        """Connections open through to the target right now."""
        return len(self._links)

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's; user, path and query kept."""
        parts = urlsplit(url)
        user = parts.netloc.rpartition("@")[0]
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    def cut(self) -> None:
        """Reset every connection, live or held, and every new one until `restore`."""
        self._cut = True
        self._flowing.set()  # held connections wake up to be reset
        for writer in list(self._writers):
            _reset(writer)

    def blackhole(self) -> None:
        """Pass nothing either way and close nothing: bytes wait, new connections are held
        unanswered. Only the client's own deadlines end its waiting."""
        self._cut = False
        self._flowing.clear()

    def restore(self) -> None:
        """Forward again: what a blackhole held goes through, as when a partition heals;
        connections cut stay gone, as after a crash."""
        self._cut = False
        self._flowing.set()

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        self.cut()
        await self._server.wait_closed()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        self._server = None

    async def __aenter__(self) -> "TcpProxy":
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(client)
        try:
            await self._forward(reader, client)
        finally:
            self._writers.discard(client)
            self._handlers.discard(task)

    async def _forward(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        await self._flowing.wait()
        if self._cut:
            _reset(client)
            return
        try:
            target = self.target_host, self.target_port
            upstream_reader, upstream = await asyncio.open_connection(*target)
        except OSError:
            _reset(client)
            return
        if self._cut:  # cut while this connection was being opened
            _reset(client)
            _reset(upstream)
            return
        self.accepted += 1
        link = (client, upstream)
        self._links.add(link)
        self._writers.add(upstream)
        try:
            # Whichever side ends first ends the other: closing a writer ends its reader.
            await asyncio.gather(
                self._one_way(reader, upstream, client),
                self._one_way(upstream_reader, client, upstream),
            )
        finally:
            self._writers.discard(upstream)
            self._links.discard(link)

    async def _one_way(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        other: asyncio.StreamWriter,
    ) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK_BYTES)
                # Blackholed during the read: hold the bytes until restored, or drop them
                # with the connection if it is cut meanwhile.
                await self._flowing.wait()
                if not data or self._cut:
                    break
                writer.write(data)
                await writer.drain()
        except OSError:  # one side reset or was cut
            pass
        finally:
            writer.close()
            other.close()
