"""The `botter` command line as an operator runs it: subprocesses against the sandbox,
a fresh PostgreSQL database and the test Redis."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from botter.config import Settings
from botter.crypto import Keyring
from botter.db.engine import sqlalchemy_url
from tests.jobs.conftest import fresh_database
from tests.sandbox.conftest import Telegram, unique

SECRET_KEY = "cli-test-secret-key-0123456789-abcdefghij"
DAY_S = 86400


@dataclass
class Cli:
    env: dict[str, str]
    cwd: Path
    db: Engine

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "botter", *args],
            env={**self.env, **env},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> Any:
        """Run a command with --json; it must succeed and print exactly one JSON value."""
        result = self.run(*args, "--json")
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith("\n")
        assert len(result.stdout.splitlines()) == 1, result.stdout
        return json.loads(result.stdout)

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(sql), params).all())


@dataclass
class Shop:
    """A bot connected through the CLI, with a channel it administers."""

    bot_id: int
    token: str
    username: str
    owner_id: int
    chat_id: int


def assert_clean_failure(
    result: subprocess.CompletedProcess[str], *secrets: str, code: int = 2
) -> str:
    """Exit `code`, nothing on stdout, one `botter: ...` line on stderr naming no secret."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("botter: ")
    assert "Traceback" not in result.stderr
    for secret in secrets:
        assert secret not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def cli(
    postgres_url: str, redis_url: str, sandbox_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cli]:
    """A migrated database of the module's own, migrated by `botter migrate` itself."""
    cwd = tmp_path_factory.mktemp("cli")  # no developer's .env can be read here
    # Nothing from the developer's shell: no PUBLIC_URL, so bots are set up for polling.
    inherited = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    database_url = fresh_database(postgres_url)
    env = {
        **inherited,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TELEGRAM_API_URL": sandbox_url,
        "BOTTER_SECRET_KEYS": SECRET_KEY,
        "BOTTER_DATA_DIR": str(cwd / "data"),
    }
    db = create_engine(sqlalchemy_url(database_url))
    runner = Cli(env, cwd, db)
    assert runner.json("migrate") == {"migrated": True}
    yield runner
    db.dispose()


@pytest.fixture(scope="module")
def telegram(sandbox_url: str) -> Iterator[Telegram]:
    client = Telegram(sandbox_url)
    yield client
    client.http.close()


def new_bot(telegram: Telegram) -> dict[str, Any]:
    return telegram.bot(unique("cli") + "_bot")


@pytest.fixture(scope="module")
def shop(cli: Cli, telegram: Telegram) -> Shop:
    bot = new_bot(telegram)
    owner_id = telegram.user("Olga")
    chat_id = telegram.channel(owner_id, bot["id"])
    assert cli.json("bot", "add", "--token", bot["token"])["id"] == bot["id"]
    assert cli.json("chat", "add", "--bot", str(bot["id"]), "--chat-id", str(chat_id))
    return Shop(bot["id"], bot["token"], bot["username"], owner_id, chat_id)


def test_migrate_prints_one_json_value_and_can_run_again(cli: Cli) -> None:
    assert cli.json("migrate") == {"migrated": True}

    tables = {row.tablename for row in cli.rows("SELECT tablename FROM pg_tables")}
    assert {"alembic_version", "bots", "plans", "payments", "jobs"} <= tables


def test_migrate_without_json_prints_a_line(cli: Cli) -> None:
    result = cli.run("migrate")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "migrated=True\n"


def test_bot_add_prints_one_json_value(cli: Cli, telegram: Telegram) -> None:
    bot = new_bot(telegram)

    added = cli.json("bot", "add", "--token", bot["token"])

    assert added == {"id": bot["id"], "username": bot["username"], "delivery": "polling"}
    # Without PUBLIC_URL the bot polls, so any webhook set before must go.
    calls = telegram.look("/calls", bot_id=bot["id"], method="deleteWebhook")
    assert [call["ok"] for call in calls] == [True]
    assert telegram.look("/calls", bot_id=bot["id"], method="setWebhook") == []
    rows = cli.rows("SELECT username, delivery, status FROM bots WHERE id = :id", id=bot["id"])
    assert [tuple(row) for row in rows] == [(bot["username"], "polling", "active")]


def test_bot_add_twice_keeps_one_bot(cli: Cli, telegram: Telegram) -> None:
    bot = new_bot(telegram)

    first = cli.json("bot", "add", "--token", bot["token"])
    second = cli.json("bot", "add", "--token", bot["token"])

    assert first == second
    assert len(cli.rows("SELECT 1 FROM bots WHERE id = :id", id=bot["id"])) == 1


def test_p8_token_encrypted_at_rest(cli: Cli, telegram: Telegram) -> None:
    bot = new_bot(telegram)
    token = bot["token"]
    secret_part = token.split(":", 1)[1]
    cli.json("bot", "add", "--token", token)

    columns = cli.rows(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_name = 'bots' AND data_type IN ('text', 'character varying')"
    )
    assert {"token_ciphertext", "webhook_secret_ciphertext"} <= {c.column_name for c in columns}
    (row,) = cli.rows("SELECT * FROM bots WHERE id = :id", id=bot["id"])
    for column in columns:
        value = getattr(row, column.column_name)
        assert value is None or secret_part not in value, column.column_name
    # Not anywhere else in the database either.
    tables = cli.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    for table in tables:
        dump = cli.rows(f'SELECT t::text AS line FROM "{table.tablename}" t')  # noqa: S608
        assert all(secret_part not in line.line for line in dump), table.tablename
    # And yet it is there, for whoever holds the key.
    assert Keyring([SECRET_KEY]).decrypt(row.token_ciphertext) == token


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("123456:AAHunknownTokenToTheSandbox0123456789", id="unknown-bot"),
        pytest.param("garbage-without-colon", id="malformed"),
        pytest.param("abc:def", id="id-not-a-number"),
    ],
)
def test_bot_add_with_a_wrong_token_fails_cleanly(cli: Cli, token: str) -> None:
    result = cli.run("bot", "add", "--token", token, "--json")

    line = assert_clean_failure(result, token, token.partition(":")[2] or token)
    assert "token" in line


def test_bot_add_with_another_bots_secret_fails_cleanly(cli: Cli, telegram: Telegram) -> None:
    bot = new_bot(telegram)
    forged = f"{bot['id']}:{'x' * 35}"

    result = cli.run("bot", "add", "--token", forged, "--json")

    line = assert_clean_failure(result, forged, bot["token"], "x" * 35)
    assert "401" in line
    assert cli.rows("SELECT 1 FROM bots WHERE id = :id", id=bot["id"]) == []


def test_chat_add_prints_id_chat_id_and_title(cli: Cli, telegram: Telegram, shop: Shop) -> None:
    chat_id = telegram.channel(shop.owner_id, shop.bot_id)

    added = cli.json("chat", "add", "--bot", str(shop.bot_id), "--chat-id", str(chat_id))

    assert set(added) == {"id", "chat_id", "title"}
    assert (added["chat_id"], added["title"]) == (chat_id, "Premium")
    rows = cli.rows(
        "SELECT id, bot_id, chat_type, join_by FROM managed_chats WHERE chat_id = :chat_id",
        chat_id=chat_id,
    )
    assert [tuple(row) for row in rows] == [(added["id"], shop.bot_id, "channel", "invite_link")]


def test_chat_add_for_join_requests(cli: Cli, telegram: Telegram, shop: Shop) -> None:
    chat_id = telegram.channel(shop.owner_id, shop.bot_id, kind="supergroup")

    cli.json("chat", "add", "--bot", str(shop.bot_id), "--chat-id", str(chat_id), "--join-request")

    rows = cli.rows("SELECT join_by FROM managed_chats WHERE chat_id = :c", c=chat_id)
    assert [row.join_by for row in rows] == ["join_request"]


@pytest.mark.parametrize(
    ("rights_off", "named"),
    [
        (["can_restrict_members"], ["can_restrict_members"]),
        (["can_invite_users"], ["can_invite_users"]),
        (
            ["can_invite_users", "can_restrict_members"],
            ["can_invite_users", "can_restrict_members"],
        ),
    ],
)
def test_chat_add_names_the_missing_rights(
    cli: Cli, telegram: Telegram, shop: Shop, rights_off: list[str], named: list[str]
) -> None:
    chat_id = telegram.channel(shop.owner_id)
    rights = dict.fromkeys(rights_off, False)
    telegram.control(f"/chats/{chat_id}/admins", {"user_id": shop.bot_id, "rights": rights})

    result = cli.run("chat", "add", "--bot", str(shop.bot_id), "--chat-id", str(chat_id))

    line = assert_clean_failure(result, shop.token)
    assert "administrator" in line
    for right in ("can_invite_users", "can_restrict_members"):
        assert (right in line) is (right in named)
    assert cli.rows("SELECT 1 FROM managed_chats WHERE chat_id = :c", c=chat_id) == []


def test_chat_add_where_the_bot_is_not_an_administrator(
    cli: Cli, telegram: Telegram, shop: Shop
) -> None:
    chat_id = telegram.channel(shop.owner_id)  # the bot is not in it at all

    result = cli.run("chat", "add", "--bot", str(shop.bot_id), "--chat-id", str(chat_id))

    line = assert_clean_failure(result, shop.token)
    assert "administrator" in line
    assert str(chat_id) in line
    assert cli.rows("SELECT 1 FROM managed_chats WHERE chat_id = :c", c=chat_id) == []


def test_chat_add_for_an_unknown_bot(cli: Cli, shop: Shop) -> None:
    result = cli.run("chat", "add", "--bot", "999", "--chat-id", str(shop.chat_id))

    line = assert_clean_failure(result)
    assert "no bot with id 999" in line


def plan_args(shop: Shop, **overrides: str) -> list[str]:
    options = {
        "--bot": str(shop.bot_id),
        "--chat": str(shop.chat_id),
        "--title": "Monthly",
        "--stars": "5",
        "--period": "30d",
        "--remind": "3d,1d",
    }
    options.update({f"--{key}": value for key, value in overrides.items()})
    return ["plan", "add", *(part for pair in options.items() for part in pair)]


def test_plan_add_prints_its_id(cli: Cli, shop: Shop) -> None:
    added = cli.json(*plan_args(shop))

    assert set(added) == {"id"}
    rows = cli.rows(
        "SELECT bot_id, title, price_stars, period_s, reminder_offsets_s, active FROM plans "
        "WHERE id = :id",
        id=added["id"],
    )
    assert [tuple(row) for row in rows] == [
        (shop.bot_id, "Monthly", 5, 30 * DAY_S, [3 * DAY_S, DAY_S], True)
    ]
    chats = cli.rows(
        "SELECT m.chat_id FROM plan_chats p JOIN managed_chats m ON m.id = p.managed_chat_id "
        "WHERE p.plan_id = :id",
        id=added["id"],
    )
    assert [row.chat_id for row in chats] == [shop.chat_id]


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param({"period": "30x"}, "'30x' is not a duration", id="period-unit"),
        pytest.param({"period": "0d"}, "longer than zero", id="period-zero"),
        pytest.param({"remind": "3d,1x"}, "'1x' is not a duration", id="remind"),
        pytest.param({"stars": "0"}, "between 1 and 10000 Stars", id="price-zero"),
        pytest.param({"stars": "10001"}, "between 1 and 10000 Stars", id="price-too-high"),
        pytest.param({"title": "x" * 33}, "1-32 characters", id="title-too-long"),
        pytest.param({"chat": "-100999"}, "botter chat add", id="chat-not-added"),
        # Past what the database holds: any clear line will do, just no traceback.
        pytest.param({"period": "99999999d"}, "botter: ", id="overflow"),
    ],
)
def test_plan_add_refuses_bad_values_cleanly(
    cli: Cli, shop: Shop, overrides: dict[str, str], named: str
) -> None:
    before = cli.rows("SELECT count(*) AS n FROM plans")[0].n

    result = cli.run(*plan_args(shop, **overrides), "--json")

    assert named in assert_clean_failure(result)
    assert cli.rows("SELECT count(*) AS n FROM plans")[0].n == before


def test_a_fresh_bot_has_no_subscriptions_payments_or_problems(cli: Cli, shop: Shop) -> None:
    assert cli.json("subscriptions", "list", "--bot", str(shop.bot_id)) == []
    assert cli.json("payments", "list", "--bot", str(shop.bot_id)) == []
    assert cli.json("problems", "list", "--bot", str(shop.bot_id)) == []


def test_lists_without_json_say_none(cli: Cli, shop: Shop) -> None:
    result = cli.run("payments", "list", "--bot", str(shop.bot_id))

    assert result.returncode == 0, result.stderr
    assert result.stdout == "(none)\n"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql://root@127.0.0.1/botter"),
        ("BOTTER_SECRET_KEYS", "too-short"),
    ],
)
def test_an_invalid_setting_fails_cleanly(cli: Cli, variable: str, value: str) -> None:
    result = cli.run("payments", "list", "--bot", "1", "--json", **{variable: value})

    line = assert_clean_failure(result)
    assert line.startswith(f"botter: invalid setting {variable}: ")
    assert "too-short" not in line


@pytest.mark.parametrize("command", [["migrate"], ["payments", "list", "--bot", "1"]])
def test_an_unreachable_database_fails_cleanly(cli: Cli, command: list[str]) -> None:
    unreachable = "postgresql://postgres:hunter2secret@127.0.0.1:1/botter"

    result = cli.run(*command, "--json", DATABASE_URL=unreachable)

    line = assert_clean_failure(result, "hunter2secret")
    assert line.startswith("botter: PostgreSQL: ")
