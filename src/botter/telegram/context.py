"""What a handler gets besides the update: its transaction and ways to cause effects."""

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from botter.jobs.queue import enqueue
from botter.runtime import Runtime


@dataclass
class UpdateContext:
    """One update being processed. Effects are jobs in the same transaction as the state."""

    conn: AsyncConnection
    runtime: Runtime
    bot_id: int
    creator_id: int
    update_id: int

    async def send(
        self, chat_id: int, text: str, reply_markup: dict[str, Any] | None = None
    ) -> None:
        args: dict[str, Any] = {"bot_id": self.bot_id, "chat_id": chat_id, "text": text}
        if reply_markup is not None:
            args["reply_markup"] = reply_markup
        await self.job("send_message", args)

    async def job(self, kind: str, args: dict[str, Any], priority: int = 1) -> None:
        await enqueue(self.conn, kind, args, creator_id=self.creator_id, priority=priority)

    async def token(self) -> str:
        return await self.runtime.token(self.conn, self.bot_id)
