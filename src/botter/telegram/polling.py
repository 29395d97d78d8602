"""Polling mode: getUpdates feeds the same inbox as the webhook, for bots without a URL.

The offset moves forward only in the transaction that stored the updates, so a crash
between receiving and storing makes Telegram send the same updates again.
"""

import logging
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from botter.db.schema import polling_offsets, update_inbox
from botter.runtime import Runtime
from botter.telegram.errors import TelegramError
from botter.telegram.lanes import lane_of

logger = logging.getLogger("botter.telegram.polling")

ALLOWED_UPDATES = (
    "message",
    "callback_query",
    "pre_checkout_query",
    "chat_member",
    "chat_join_request",
    "my_chat_member",
)
LONG_POLL_S = 20


async def poll_once(runtime: Runtime, bot_id: int, creator_id: int, timeout_s: int) -> int:
    """One getUpdates round for one bot; the number of updates stored."""
    async with runtime.engine.connect() as conn:
        token = await runtime.token(conn, bot_id)
        offset = (
            await conn.execute(
                select(polling_offsets.c.next_update_id).where(polling_offsets.c.bot_id == bot_id)
            )
        ).scalar_one_or_none()
    try:
        updates = await runtime.telegram.get_updates(
            token, offset=offset, timeout_s=timeout_s, allowed_updates=ALLOWED_UPDATES
        )
    except TelegramError as error:
        logger.warning("polling.failed bot_id=%s error=%s", bot_id, type(error).__name__)
        return 0
    if not updates:
        return 0
    await store(runtime, bot_id, creator_id, updates)
    return len(updates)


async def store(
    runtime: Runtime, bot_id: int, creator_id: int, updates: list[dict[str, Any]]
) -> None:
    rows = []
    for update in updates:
        lane, priority = lane_of(update)
        rows.append(
            {
                "creator_id": creator_id,
                "bot_id": bot_id,
                "update_id": update["update_id"],
                "lane": lane,
                "priority": priority,
                "body": orjson.dumps(update),
            }
        )
    next_offset = max(update["update_id"] for update in updates) + 1
    async with runtime.engine.begin() as conn:
        await conn.execute(insert(update_inbox).values(rows).on_conflict_do_nothing())
        offset = insert(polling_offsets).values(bot_id=bot_id, next_update_id=next_offset)
        await conn.execute(
            offset.on_conflict_do_update(
                index_elements=["bot_id"], set_={"next_update_id": next_offset}
            )
        )
    logger.info("update.received bot_id=%s count=%s via=polling", bot_id, len(rows))
