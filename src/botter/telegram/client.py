"""The one client botter uses for Bot API calls: paced, classified, never leaking a token."""

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx
import orjson

from botter.metrics import TELEGRAM_CALLS, TELEGRAM_RETRY_AFTER_SECONDS
from botter.telegram.breaker import Breaker, counts_as_failure
from botter.telegram.errors import (
    TelegramError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    classify,
)
from botter.telegram.pacing import Pacer

logger = logging.getLogger("botter.telegram")

ChatId = int | str

DEFAULT_TIMEOUT_S = 10.0
STARS = "XTR"
JSON_HEADERS = {"Content-Type": "application/json"}

# Methods that post a message into a chat and so spend Telegram's send budgets.
SEND_METHODS = frozenset(
    name.lower()
    for name in (
        "sendMessage",
        "sendInvoice",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
        "sendPhoto",
        "sendAudio",
        "sendDocument",
        "sendVideo",
        "sendAnimation",
        "sendVoice",
        "sendVideoNote",
        "sendPaidMedia",
        "sendMediaGroup",
        "sendLocation",
        "sendVenue",
        "sendContact",
        "sendPoll",
        "sendDice",
        "sendSticker",
        "sendGame",
    )
)

# Never held back by a breaker: a pre-checkout answer is due within 10 s and is the best
# probe there is; getUpdates is how polling bots notice Telegram is back.
BREAKER_EXEMPT = frozenset({"answerPreCheckoutQuery", "getUpdates"})

_TOKEN_IN_URL = re.compile(r"(/bot\d+)(:|%3A)[^/\s\"'?#]+", re.IGNORECASE)
_HTTP_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "botter.telegram",
)


def bot_id_of(token: str) -> int:
    """The bot's id: the part of its token before the colon."""
    head, colon, secret = token.partition(":")
    if not colon or not head.isdigit() or not secret:
        raise ValueError("a bot token has the form <bot_id>:<secret>")
    return int(head)


def redact_tokens(text: str) -> str:
    """Replace the secret of every bot token inside a Bot API URL with ***."""
    return _TOKEN_IN_URL.sub(r"\1\2***", text)


def _redacted(value: Any) -> Any:
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    redacted = redact_tokens(text)
    return value if redacted == text else redacted


class TokenRedactionFilter(logging.Filter):
    """Rewrites /bot<id>:<secret>/ to /bot<id>:***/ in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: _redacted(value) for key, value in record.args.items()}
        elif record.args:
            record.args = tuple(_redacted(value) for value in record.args)
        return True


def install_token_redaction() -> None:
    """Keep tokens out of the HTTP client's logs (httpx logs every request's URL)."""
    for name in _HTTP_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactionFilter) for f in target.filters):
            target.addFilter(TokenRedactionFilter())


def without_none(params: Mapping[str, Any]) -> dict[str, Any]:
    """Telegram reads an absent optional parameter as its default; null is not the same."""
    return {key: value for key, value in params.items() if value is not None}


def parse_envelope(method: str, response: httpx.Response) -> Any:
    """The result of a Bot API answer, or the classified error it carries."""
    envelope = envelope_of(method, response)
    if envelope["ok"] is True:
        return envelope.get("result")
    error_code = envelope.get("error_code")
    if not isinstance(error_code, int) or isinstance(error_code, bool):
        error_code = response.status_code
    description = str(envelope.get("description") or f"HTTP {response.status_code}")
    parameters = envelope.get("parameters")
    raise classify(
        method, error_code, description, parameters if isinstance(parameters, dict) else None
    )


def envelope_of(method: str, response: httpx.Response) -> dict[str, Any]:
    """The answer's {"ok": ...} object; a proxy's HTML error page is no envelope."""
    try:
        envelope = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        envelope = None
    if isinstance(envelope, dict) and "ok" in envelope:
        return envelope
    status = response.status_code
    error = TelegramServerError if status >= 500 else TelegramError
    raise error(method, status, f"the answer is not a Bot API envelope (HTTP {status})")


def paced_chat(method: str, params: Mapping[str, Any], chat_id: ChatId | None) -> ChatId | None:
    """The chat whose send budget this call spends, if it sends a message."""
    if method.lower() not in SEND_METHODS:
        return None
    chat = params.get("chat_id") if chat_id is None else chat_id
    if isinstance(chat, bool) or not isinstance(chat, int | str):
        return None
    return chat


class TelegramClient:
    """Bot API calls for any number of bots; each call takes the bot's token first."""

    def __init__(
        self,
        api_url: str,
        pacer: Pacer | None,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        breaker: Breaker | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.pacer = pacer
        self.breaker = breaker
        self.timeout_s = timeout_s
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        install_token_redaction()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> "TelegramClient":
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def call(
        self,
        token: str,
        method: str,
        params: Mapping[str, Any],
        *,
        chat_id: ChatId | None = None,
        retry_429: int = 0,
        timeout_s: float | None = None,
    ) -> Any:
        """Call a Bot API method and answer its result, or raise the classified error.

        A 429 holds the bot's sends on every instance and raises TelegramRetryAfter;
        retry_429 asks for that many retries in place, each after retry_after_s.
        """
        bot_id = bot_id_of(token)
        for retries_left in range(retry_429, -1, -1):
            try:
                return await self._call_once(token, bot_id, method, params, chat_id, timeout_s)
            except TelegramRetryAfter as error:
                if not retries_left:
                    raise
                await asyncio.sleep(error.retry_after_s)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _call_once(
        self,
        token: str,
        bot_id: int,
        method: str,
        params: Mapping[str, Any],
        chat_id: ChatId | None,
        timeout_s: float | None,
    ) -> Any:
        guarded = self.breaker is not None and method not in BREAKER_EXEMPT
        admission = await self.breaker.admit(bot_id, method) if self.breaker and guarded else None
        chat = paced_chat(method, params, chat_id)
        if chat is not None and self.pacer is not None:
            await self.pacer.acquire(bot_id, chat)
        try:
            response = await self._post(token, method, params, timeout_s or self.timeout_s)
            result = parse_envelope(method, response)
        except TelegramError as error:
            TELEGRAM_CALLS.labels(method, type(error).__name__).inc()
            if self.breaker and admission:
                await self.breaker.record(bot_id, admission, not counts_as_failure(error))
            await self._failed(bot_id, error)
            raise
        TELEGRAM_CALLS.labels(method, "ok").inc()
        if self.breaker and admission:
            await self.breaker.record(bot_id, admission, True)
        logger.debug("telegram.call_ok method=%s bot_id=%s", method, bot_id)
        return result

    async def _post(
        self, token: str, method: str, params: Mapping[str, Any], timeout_s: float
    ) -> httpx.Response:
        # Errors are re-raised without their cause: httpx's errors carry the URL, and so the token.
        url = f"{self.api_url}/bot{token}/{method}"
        body = orjson.dumps(without_none(params))
        try:
            return await self._http.post(
                url, content=body, headers=JSON_HEADERS, timeout=timeout_s
            )
        except httpx.TimeoutException:
            raise TelegramNetworkError(method, None, f"no answer within {timeout_s} s") from None
        except httpx.RequestError as error:
            description = f"no answer: {type(error).__name__}"
            raise TelegramNetworkError(method, None, description) from None

    async def _failed(self, bot_id: int, error: TelegramError) -> None:
        if isinstance(error, TelegramRetryAfter):
            TELEGRAM_RETRY_AFTER_SECONDS.inc(error.retry_after_s)
            if self.pacer is not None:
                await self.pacer.cool_down(bot_id, error.retry_after_s)
        logger.log(
            logging.WARNING if error.retryable else logging.INFO,
            "telegram.call_failed method=%s error_code=%s bot_id=%s error=%s description=%s",
            error.method,
            error.error_code,
            bot_id,
            type(error).__name__,
            error.description,
        )

    # Result shapes: a broken server must not hand callers a None where an object belongs.

    async def _object(self, token: str, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        result = await self.call(token, method, params)
        if not isinstance(result, dict):
            raise TelegramError(method, None, "the result is not an object")
        return result

    async def _objects(
        self, token: str, method: str, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        result = await self.call(token, method, params)
        if not isinstance(result, list) or not all(isinstance(item, dict) for item in result):
            raise TelegramError(method, None, "the result is not a list of objects")
        return result

    async def _true(self, token: str, method: str, params: Mapping[str, Any]) -> bool:
        result = await self.call(token, method, params)
        if result is not True:
            raise TelegramError(method, None, "the result is not true")
        return True

    async def _string(self, token: str, method: str, params: Mapping[str, Any]) -> str:
        result = await self.call(token, method, params)
        if not isinstance(result, str):
            raise TelegramError(method, None, "the result is not a string")
        return result

    # The bot and its updates

    async def get_me(self, token: str) -> dict[str, Any]:
        return await self._object(token, "getMe", {})

    async def set_webhook(
        self,
        token: str,
        url: str,
        secret_token: str,
        allowed_updates: Sequence[str] | None = None,
        max_connections: int | None = None,
        drop_pending_updates: bool = False,
    ) -> bool:
        params = {
            "url": url,
            "secret_token": secret_token,
            "allowed_updates": None if allowed_updates is None else list(allowed_updates),
            "max_connections": max_connections,
            "drop_pending_updates": drop_pending_updates,
        }
        return await self._true(token, "setWebhook", params)

    async def delete_webhook(self, token: str, drop_pending_updates: bool = False) -> bool:
        params = {"drop_pending_updates": drop_pending_updates}
        return await self._true(token, "deleteWebhook", params)

    async def get_webhook_info(self, token: str) -> dict[str, Any]:
        return await self._object(token, "getWebhookInfo", {})

    async def get_updates(
        self,
        token: str,
        offset: int | None = None,
        timeout_s: int = 0,
        allowed_updates: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            "offset": offset,
            "timeout": timeout_s,
            "allowed_updates": None if allowed_updates is None else list(allowed_updates),
            "limit": limit,
        }
        # Telegram holds a long poll open for timeout_s: wait that long on top of our own.
        result = await self.call(token, "getUpdates", params, timeout_s=self.timeout_s + timeout_s)
        if not isinstance(result, list):
            raise TelegramError("getUpdates", None, "the result is not a list")
        return result

    # Messages

    async def send_message(
        self,
        token: str,
        chat_id: ChatId,
        text: str,
        reply_markup: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = {"chat_id": chat_id, "text": text, "reply_markup": reply_markup}
        return await self._object(token, "sendMessage", params)

    async def edit_message_text(
        self,
        token: str,
        chat_id: ChatId,
        message_id: int,
        text: str,
        reply_markup: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = {
            "chat_id": chat_id,
            "message_id": message_id,
            "text": text,
            "reply_markup": reply_markup,
        }
        return await self._object(token, "editMessageText", params)

    async def answer_callback_query(
        self,
        token: str,
        callback_query_id: str,
        text: str | None = None,
        show_alert: bool = False,
    ) -> bool:
        params = {"callback_query_id": callback_query_id, "text": text, "show_alert": show_alert}
        return await self._true(token, "answerCallbackQuery", params)

    # Payments in Telegram Stars

    async def send_invoice(
        self,
        token: str,
        chat_id: ChatId,
        title: str,
        description: str,
        payload: str,
        amount_stars: int,
        *,
        label: str | None = None,
        start_parameter: str | None = None,
        reply_markup: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        params = {
            "chat_id": chat_id,
            **stars_invoice(title, description, payload, amount_stars, label),
            "start_parameter": start_parameter,
            "reply_markup": reply_markup,
        }
        return await self._object(token, "sendInvoice", params)

    async def create_invoice_link(
        self,
        token: str,
        title: str,
        description: str,
        payload: str,
        amount_stars: int,
        *,
        label: str | None = None,
        subscription_period_s: int | None = None,
    ) -> str:
        params = {
            **stars_invoice(title, description, payload, amount_stars, label),
            "subscription_period": subscription_period_s,
        }
        return await self._string(token, "createInvoiceLink", params)

    async def answer_pre_checkout_query(
        self, token: str, query_id: str, ok: bool, error_message: str | None = None
    ) -> bool:
        params = {"pre_checkout_query_id": query_id, "ok": ok, "error_message": error_message}
        return await self._true(token, "answerPreCheckoutQuery", params)

    async def refund_star_payment(
        self, token: str, user_id: int, telegram_payment_charge_id: str
    ) -> bool:
        params = {"user_id": user_id, "telegram_payment_charge_id": telegram_payment_charge_id}
        return await self._true(token, "refundStarPayment", params)

    async def get_star_transactions(
        self, token: str, offset: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        params = {"offset": offset, "limit": limit}
        return await self._object(token, "getStarTransactions", params)

    # Chats, invite links and members

    async def create_chat_invite_link(
        self,
        token: str,
        chat_id: ChatId,
        name: str | None = None,
        expire_date: int | None = None,
        member_limit: int | None = None,
        creates_join_request: bool | None = None,
    ) -> dict[str, Any]:
        params = {
            "chat_id": chat_id,
            "name": name,
            "expire_date": expire_date,
            "member_limit": member_limit,
            "creates_join_request": creates_join_request,
        }
        return await self._object(token, "createChatInviteLink", params)

    async def revoke_chat_invite_link(
        self, token: str, chat_id: ChatId, invite_link: str
    ) -> dict[str, Any]:
        params = {"chat_id": chat_id, "invite_link": invite_link}
        return await self._object(token, "revokeChatInviteLink", params)

    async def approve_chat_join_request(self, token: str, chat_id: ChatId, user_id: int) -> bool:
        params = {"chat_id": chat_id, "user_id": user_id}
        return await self._true(token, "approveChatJoinRequest", params)

    async def decline_chat_join_request(self, token: str, chat_id: ChatId, user_id: int) -> bool:
        params = {"chat_id": chat_id, "user_id": user_id}
        return await self._true(token, "declineChatJoinRequest", params)

    async def ban_chat_member(
        self,
        token: str,
        chat_id: ChatId,
        user_id: int,
        until_date: int | None = None,
        revoke_messages: bool | None = None,
    ) -> bool:
        params = {
            "chat_id": chat_id,
            "user_id": user_id,
            "until_date": until_date,
            "revoke_messages": revoke_messages,
        }
        return await self._true(token, "banChatMember", params)

    async def unban_chat_member(
        self, token: str, chat_id: ChatId, user_id: int, only_if_banned: bool = True
    ) -> bool:
        params = {"chat_id": chat_id, "user_id": user_id, "only_if_banned": only_if_banned}
        return await self._true(token, "unbanChatMember", params)

    async def get_chat(self, token: str, chat_id: ChatId) -> dict[str, Any]:
        return await self._object(token, "getChat", {"chat_id": chat_id})

    async def get_chat_member(self, token: str, chat_id: ChatId, user_id: int) -> dict[str, Any]:
        params = {"chat_id": chat_id, "user_id": user_id}
        return await self._object(token, "getChatMember", params)

    async def get_chat_administrators(self, token: str, chat_id: ChatId) -> list[dict[str, Any]]:
        return await self._objects(token, "getChatAdministrators", {"chat_id": chat_id})


def stars_invoice(
    title: str, description: str, payload: str, amount_stars: int, label: str | None
) -> dict[str, Any]:
    """The invoice fields of a payment in Telegram Stars: XTR, one price, no provider."""
    return {
        "title": title,
        "description": description,
        "payload": payload,
        "currency": STARS,
        "prices": [{"label": label or title, "amount": amount_stars}],
        "provider_token": "",
    }
