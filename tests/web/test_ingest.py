"""The webhook ingest path over real HTTP: secrets, bodies, duplicates, group commit, lanes."""

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from botter.telegram.lanes import PRIORITY_NORMAL, PRIORITY_URGENT
from botter.web.ingest import SECRET_HEADER
from tests.web.conftest import (
    BODY_LIMIT_BYTES,
    LOOP,
    Bot,
    Database,
    Web,
    message_update,
    next_update_id,
    unknown_bot_id,
)

pytestmark = LOOP

UNAUTHORIZED = b'{"error":"unauthorized"}'


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def padded_update(update_id: int, size_bytes: int) -> bytes:
    """A valid update of exactly `size_bytes` bytes."""
    body = orjson.dumps(message_update(update_id, text=""))
    padding = size_bytes - len(body)
    assert padding >= 0
    return orjson.dumps(message_update(update_id, text="x" * padding))


async def in_chunks(body: bytes, size_bytes: int = 512) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size_bytes):
        yield body[start : start + size_bytes]


# P2: only the bot's own secret gets in, and every refusal looks the same.


async def test_p2_right_secret_is_recorded_once_and_answered_200(
    web: Web, bot: Bot, db: Database
) -> None:
    update_id = next_update_id()
    response = await web.deliver(bot, message_update(update_id))
    assert response.status_code == 200
    assert response.json() == {}
    rows = await db.inbox(bot.id)
    assert [(row.update_id, row.creator_id, row.status) for row in rows] == [
        (update_id, bot.creator_id, "pending")
    ]


@pytest.mark.parametrize(
    "forgery",
    [
        "wrong secret",
        "secret in other case",
        "empty secret",
        "missing header",
        "another bot's secret",
        "unknown bot id",
        "non-numeric bot id",
        "zero bot id",
        "negative bot id",
        "bot id beyond 64 bits",
        "non-ascii digits",
    ],
)
async def test_p2_forged_requests_get_the_same_401_and_store_nothing(
    web: Web, bot: Bot, db: Database, forgery: str
) -> None:
    other = await db.register_bot()
    await web.deliver(other, message_update(next_update_id()))  # `other` is known and cached
    update_id = next_update_id()
    body = orjson.dumps(message_update(update_id))
    target: int | str = bot.id
    secret: str | None = bot.webhook_secret
    match forgery:
        case "wrong secret":
            secret = "not-" + bot.webhook_secret
        case "secret in other case":
            secret = bot.webhook_secret.swapcase()
        case "empty secret":
            secret = ""
        case "missing header":
            secret = None
        case "another bot's secret":
            secret = other.webhook_secret
        case "unknown bot id":
            target = unknown_bot_id()
        case "non-numeric bot id":
            target = f"{bot.id}abc"
        case "zero bot id":
            target = 0
        case "negative bot id":
            target = f"-{bot.id}"
        case "bot id beyond 64 bits":
            target = 2**64 + bot.id
        case "non-ascii digits":
            target = "١٢٣"

    response = await web.post(target, body, secret)

    assert response.status_code == 401
    assert response.content == UNAUTHORIZED
    assert response.headers["content-type"] == "application/json"
    assert await db.count(update_id=update_id) == 0
    assert await db.count(bot_id=bot.id) == 0


async def test_p2_unknown_bot_and_wrong_secret_answers_are_indistinguishable(
    web: Web, bot: Bot
) -> None:
    body = orjson.dumps(message_update(next_update_id()))
    wrong = await web.post(bot.id, body, "not-the-secret")
    unknown = await web.post(unknown_bot_id(), body, bot.webhook_secret)

    def shape(response: httpx.Response) -> tuple[int, bytes, dict[str, str]]:
        headers = {name: value for name, value in response.headers.items() if name != "date"}
        return response.status_code, response.content, headers

    assert shape(wrong) == shape(unknown)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"x" * (BODY_LIMIT_BYTES + 1)],
    ids=["not json", "over the cap"],
)
async def test_p2_secret_is_checked_before_the_body(
    web: Web, bot: Bot, db: Database, body: bytes
) -> None:
    response = await web.post(bot.id, body, "not-the-secret")
    assert response.status_code == 401
    assert response.content == UNAUTHORIZED
    assert await db.count(bot_id=bot.id) == 0


# Bodies: capped, and only JSON objects with a usable update_id are taken.


async def test_body_over_the_cap_with_content_length_is_413(
    web: Web, bot: Bot, db: Database
) -> None:
    update_id = next_update_id()
    body = padded_update(update_id, BODY_LIMIT_BYTES + 1)
    response = await web.post(bot.id, body, bot.webhook_secret)
    assert response.status_code == 413
    assert response.json() == {"error": "body too large"}
    assert await db.count(bot_id=bot.id) == 0


async def test_streamed_body_over_the_cap_without_content_length_is_413(
    web: Web, bot: Bot, db: Database
) -> None:
    update_id = next_update_id()
    body = padded_update(update_id, BODY_LIMIT_BYTES + 1)
    request = web.http.build_request(
        "POST",
        f"/webhook/telegram/{bot.id}",
        content=in_chunks(body),
        headers={SECRET_HEADER: bot.webhook_secret},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await web.http.send(request)
    assert response.status_code == 413
    assert response.json() == {"error": "body too large"}
    assert await db.count(bot_id=bot.id) == 0


async def test_bodies_up_to_the_cap_are_taken_declared_or_streamed(
    web: Web, bot: Bot, db: Database
) -> None:
    declared_id, streamed_id = next_update_id(), next_update_id()
    declared = padded_update(declared_id, BODY_LIMIT_BYTES)
    streamed = padded_update(streamed_id, BODY_LIMIT_BYTES)

    assert (await web.post(bot.id, declared, bot.webhook_secret)).status_code == 200
    response = await web.http.post(
        f"/webhook/telegram/{bot.id}",
        content=in_chunks(streamed),
        headers={SECRET_HEADER: bot.webhook_secret},
    )
    assert response.status_code == 200

    rows = await db.inbox(bot.id)
    assert [(row.update_id, row.body) for row in rows] == [
        (declared_id, declared),
        (streamed_id, streamed),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "body is not JSON"),
        (b"not json", "body is not JSON"),
        (b'{"update_id": 1', "body is not JSON"),
        (b"\xff\xfe", "body is not JSON"),
        (b"[1, 2]", "update must be a JSON object"),
        (b"42", "update must be a JSON object"),
        (b"null", "update must be a JSON object"),
        (b'{"message": {"text": "hi"}}', "update_id must be an integer"),
        (b'{"update_id": "5"}', "update_id must be an integer"),
        (b'{"update_id": true}', "update_id must be an integer"),
        (b'{"update_id": 5.0}', "update_id must be an integer"),
        (b'{"update_id": null}', "update_id must be an integer"),
        (b'{"update_id": -1}', "update_id is out of range"),
        (b'{"update_id": 9223372036854775808}', "update_id is out of range"),
    ],
)
async def test_bad_bodies_get_400_naming_the_problem_and_store_nothing(
    web: Web, bot: Bot, db: Database, body: bytes, error: str
) -> None:
    response = await web.post(bot.id, body, bot.webhook_secret)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert await db.count(bot_id=bot.id) == 0


# P3: however often Telegram delivers an update, it is recorded once.


async def test_p3_same_update_twice_is_200_twice_and_one_row(
    web: Web, bot: Bot, db: Database
) -> None:
    update = message_update(next_update_id())
    first = await web.deliver(bot, update)
    second = await web.deliver(bot, update)
    assert (first.status_code, second.status_code) == (200, 200)
    assert len(await db.inbox(bot.id)) == 1


async def test_p3_same_update_concurrently_is_200_for_all_and_one_row(
    web: Web, bot: Bot, db: Database
) -> None:
    stored_before = sample("botter_updates_received_total", outcome="stored")
    duplicates_before = sample("botter_updates_received_total", outcome="duplicate")
    update = message_update(next_update_id())

    responses = await asyncio.gather(*(web.deliver(bot, update) for _ in range(20)))

    assert [response.status_code for response in responses] == [200] * 20
    assert [row.update_id for row in await db.inbox(bot.id)] == [update["update_id"]]
    # Exactly one delivery is told it stored the update; the other 19 were duplicates.
    assert sample("botter_updates_received_total", outcome="stored") - stored_before == 1
    duplicates = sample("botter_updates_received_total", outcome="duplicate")
    assert duplicates - duplicates_before == 19


async def test_p3_many_different_updates_concurrently_are_each_stored_once(
    web: Web, bot: Bot, db: Database
) -> None:
    batches_before = sample("botter_ingest_batch_size_count")
    batched_before = sample("botter_ingest_batch_size_sum")
    update_ids = [next_update_id() for _ in range(200)]
    updates = [message_update(update_id, chat_id=update_id % 7) for update_id in update_ids]

    responses = await asyncio.gather(*(web.deliver(bot, update) for update in updates))

    assert [response.status_code for response in responses] == [200] * 200
    assert [row.update_id for row in await db.inbox(bot.id)] == sorted(update_ids)
    batches = sample("botter_ingest_batch_size_count") - batches_before
    assert sample("botter_ingest_batch_size_sum") - batched_before == 200
    # Group commit: fewer statements than updates, so at least one batch held several.
    assert 1 <= batches < 200


# Lanes: what the workers need to order and prioritise, decided at ingest.


async def test_pre_checkout_query_is_urgent_in_its_own_lane(
    web: Web, bot: Bot, db: Database
) -> None:
    update_id = next_update_id()
    query = {
        "id": "4382bfdwdsb323b2d9",
        "from": {"id": 1234, "is_bot": False, "first_name": "Ann"},
        "currency": "XTR",
        "total_amount": 50,
        "invoice_payload": "order-1",
    }
    body = orjson.dumps({"update_id": update_id, "pre_checkout_query": query})
    assert (await web.post(bot.id, body, bot.webhook_secret)).status_code == 200
    [row] = await db.inbox(bot.id)
    assert (row.lane, row.priority) == (f"pcq:{update_id}", PRIORITY_URGENT)
    assert row.body == body


async def test_message_waits_in_its_chats_lane(web: Web, bot: Bot, db: Database) -> None:
    update_id = next_update_id()
    body = orjson.dumps(message_update(update_id, chat_id=-1001234567890))
    assert (await web.post(bot.id, body, bot.webhook_secret)).status_code == 200
    [row] = await db.inbox(bot.id)
    assert (row.lane, row.priority) == ("chat:-1001234567890", PRIORITY_NORMAL)
    assert row.body == body  # the raw bytes, for the worker to parse


# P9: no secret in any answer or log line.


async def test_p9_webhook_secret_and_token_never_appear_in_answers_or_logs(
    web: Web, bot: Bot, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="botter")
    update = message_update(next_update_id())
    body = orjson.dumps(update)
    secret = bot.webhook_secret
    responses = [
        await web.deliver(bot, update),
        await web.deliver(bot, update),
        await web.post(bot.id, body, "not-" + secret),
        await web.post(bot.id, body, None),
        await web.post(unknown_bot_id(), body, secret),
        await web.post(bot.id, b"not json", secret),
        await web.post(bot.id, b'{"update_id": "' + secret.encode() + b'"}', secret),
        await web.post(bot.id, b"x" * (BODY_LIMIT_BYTES + 1), secret),
        await web.http.get("/health"),
        await web.http.get("/ready"),
        await web.http.get("/metrics"),
    ]
    assert [response.status_code for response in responses] == [
        *(200, 200, 401, 401, 401, 400, 400, 413),
        *(200, 200, 200),
    ]
    for response in responses:
        answer = response.text + str(response.headers)
        assert secret not in answer
        assert bot.token not in answer
        assert bot.token.partition(":")[2] not in answer
    logged = "\n".join(
        record.getMessage() for record in caplog.records if record.name.startswith("botter")
    )
    assert "update.received" in logged, "nothing was logged, so the log check proves nothing"
    assert secret not in logged
    assert bot.token not in logged
