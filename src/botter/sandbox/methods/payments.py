"""Telegram Stars: invoices, the pre-checkout handshake, transactions and refunds."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from botter.sandbox.core import Call, Handler, Sandbox
from botter.sandbox.errors import QUERY_TOO_OLD, bad_request
from botter.sandbox.methods.chats import MAX_SUBSCRIPTION_PRICE, SUBSCRIPTION_PERIOD_S
from botter.sandbox.methods.messages import post, validate_reply_markup
from botter.sandbox.world import (
    Bot,
    Invoice,
    PreCheckoutQuery,
    StarTransaction,
    User,
    now_s,
    random_text,
)

STARS = "XTR"
MAX_PAYLOAD_BYTES = 128


def parse_invoice(call: Call, allow_subscription: bool) -> Invoice:
    params = call.params
    title = params.string("title")
    if not 1 <= len(title) <= 32:
        raise bad_request("invoice title length must be 1-32 characters")
    description = params.string("description")
    if not 1 <= len(description) <= 255:
        raise bad_request("invoice description length must be 1-255 characters")
    payload = params.string("payload")
    if not 1 <= len(payload.encode()) <= MAX_PAYLOAD_BYTES:
        raise bad_request("invoice payload length must be 1-128 bytes")
    currency = params.string("currency")
    if currency != STARS:
        raise bad_request("the sandbox accepts payments in Telegram Stars (currency XTR) only")
    if params.has("provider_token"):
        raise bad_request("provider_token must be empty for payments in Telegram Stars")
    prices = params.json("prices")
    if not isinstance(prices, list) or len(prices) != 1 or not isinstance(prices[0], dict):
        raise bad_request("exactly one price must be specified for payments in Telegram Stars")
    amount = prices[0].get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
        raise bad_request("price amount must be a positive whole number of Stars")
    period_s = params.opt_integer("subscription_period")
    if period_s is not None:
        if not allow_subscription:
            raise bad_request('parameter "subscription_period" is not supported by this method')
        if period_s != SUBSCRIPTION_PERIOD_S:
            raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
        if amount > MAX_SUBSCRIPTION_PRICE:
            raise bad_request("SUBSCRIPTION_PRICE_INVALID")
    return Invoice(
        bot_id=call.bot.id,
        title=title,
        description=description,
        payload=payload,
        currency=currency,
        amount=amount,
        start_parameter=params.opt_string("start_parameter") or "",
        subscription_period=period_s,
    )


async def send_invoice(call: Call) -> dict[str, Any]:
    chat_id = call.params.chat_id()
    invoice = parse_invoice(call, allow_subscription=False)
    markup = validate_reply_markup(call.params.opt_json("reply_markup"))
    message = post(call, chat_id, invoice=invoice.to_api(), reply_markup=markup)
    if isinstance(chat_id, int):
        call.world.message_invoices[(call.bot.id, chat_id, message.message_id)] = invoice
    return message.to_api()


async def create_invoice_link(call: Call) -> str:
    invoice = parse_invoice(call, allow_subscription=True)
    link = f"https://t.me/${random_text(20)}"
    call.world.invoice_links[link] = invoice
    return link


async def answer_pre_checkout_query(call: Call) -> bool:
    query_id = call.params.string("pre_checkout_query_id")
    query = call.world.pre_checkout_queries.get(query_id)
    expired = query is None or query.bot_id != call.bot.id or time.monotonic() > query.deadline
    if query is None or expired or query.answer.done():
        raise bad_request(QUERY_TOO_OLD)
    ok = call.params.boolean("ok")
    error_message = call.params.opt_string("error_message")
    if not ok and not error_message:
        raise bad_request('parameter "error_message" is required when ok is false')
    query.answer.set_result((ok, error_message))
    return True


def own_transaction(call: Call, user_id: int, charge_id: str) -> StarTransaction:
    for transaction in call.world.transactions[call.bot.id]:
        if (
            transaction.id == charge_id
            and transaction.user.id == user_id
            and not transaction.is_refund
        ):
            return transaction
    raise bad_request("CHARGE_ID_INVALID")


async def refund_star_payment(call: Call) -> bool:
    user = call.world.user(call.params.integer("user_id"))
    charge_id = call.params.string("telegram_payment_charge_id")
    payment = own_transaction(call, user.id, charge_id)
    ledger = call.world.transactions[call.bot.id]
    if any(t.is_refund and t.id == charge_id for t in ledger):
        raise bad_request("CHARGE_ALREADY_REFUNDED")
    user.stars += payment.amount
    ledger.append(
        StarTransaction(
            id=charge_id,
            bot_id=call.bot.id,
            user=user,
            amount=payment.amount,
            date=now_s(),
            invoice_payload=payment.invoice_payload,
            is_refund=True,
        )
    )
    refunded = {
        "currency": STARS,
        "total_amount": payment.amount,
        "invoice_payload": payment.invoice_payload,
        "telegram_payment_charge_id": charge_id,
    }
    call.sandbox.post_private(call.bot, user, user, emit=True, refunded_payment=refunded)
    return True


async def get_star_transactions(call: Call) -> dict[str, Any]:
    offset = call.params.opt_integer("offset") or 0
    limit = call.params.opt_integer("limit") or 100
    if not 1 <= limit <= 100:
        raise bad_request("limit must be between 1 and 100")
    ledger = call.world.transactions[call.bot.id]
    return {"transactions": [t.to_api() for t in ledger[offset : offset + limit]]}


async def edit_user_star_subscription(call: Call) -> bool:
    user_id = call.params.integer("user_id")
    transaction = own_transaction(call, user_id, call.params.string("telegram_payment_charge_id"))
    if transaction.subscription_period is None:
        raise bad_request("CHARGE_ID_INVALID")
    canceled = call.params.boolean("is_canceled")
    if transaction.subscription_canceled == canceled:
        raise bad_request("SUBSCRIPTION_NOT_MODIFIED")
    transaction.subscription_canceled = canceled
    return True


@dataclass
class PaymentOutcome:
    status: str
    telegram_payment_charge_id: str | None = None
    update_id: int | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None}


async def pay(sandbox: Sandbox, bot: Bot, user: User, invoice: Invoice) -> PaymentOutcome:
    """Telegram's checkout: pre_checkout_query, wait for the bot's answer, then charge."""
    if user.stars < invoice.amount:
        # Telegram sends the user to buy Stars first; the bot hears nothing.
        return PaymentOutcome("declined", error_message="not enough Stars")
    query = PreCheckoutQuery(
        id=random_text(19, "0123456789"),
        bot_id=bot.id,
        user=user,
        invoice=invoice,
        deadline=time.monotonic() + sandbox.config.pre_checkout_timeout_s,
        answer=asyncio.get_running_loop().create_future(),
    )
    sandbox.world.pre_checkout_queries[query.id] = query
    content = {
        "id": query.id,
        "from": user.to_api(),
        "currency": invoice.currency,
        "total_amount": invoice.amount,
        "invoice_payload": invoice.payload,
    }
    sandbox.delivery.enqueue(bot, "pre_checkout_query", content, user.id)
    try:
        ok, error_message = await asyncio.wait_for(
            asyncio.shield(query.answer), sandbox.config.pre_checkout_timeout_s
        )
    except TimeoutError:
        return PaymentOutcome("timeout", error_message="the bot did not answer in time")
    if not ok:
        return PaymentOutcome("declined", error_message=error_message)
    if user.stars < invoice.amount:
        return PaymentOutcome("declined", error_message="not enough Stars")
    return charge(sandbox, bot, user, invoice)


def charge(sandbox: Sandbox, bot: Bot, user: User, invoice: Invoice) -> PaymentOutcome:
    user.stars -= invoice.amount
    invoice.paid = True
    charge_id = f"stx{random_text(40)}"
    paid = {
        "currency": invoice.currency,
        "total_amount": invoice.amount,
        "invoice_payload": invoice.payload,
        "telegram_payment_charge_id": charge_id,
        "provider_payment_charge_id": f"{user.id}_{random_text(12, '0123456789')}",
    }
    if invoice.subscription_period is not None:
        paid["subscription_expiration_date"] = now_s() + invoice.subscription_period
        paid["is_recurring"] = True
        paid["is_first_recurring"] = True
    sandbox.world.transactions[bot.id].append(
        StarTransaction(
            id=charge_id,
            bot_id=bot.id,
            user=user,
            amount=invoice.amount,
            date=now_s(),
            invoice_payload=invoice.payload,
            subscription_period=invoice.subscription_period,
        )
    )
    conversation = sandbox.world.private_chat(bot.id, user.id)
    # Paying opens the conversation: the bot may write to the user from now on.
    conversation.started = True
    _, update_id = sandbox.post_private(bot, user, user, emit=True, successful_payment=paid)
    return PaymentOutcome("paid", telegram_payment_charge_id=charge_id, update_id=update_id)


HANDLERS: dict[str, Handler] = {
    "sendInvoice": send_invoice,
    "createInvoiceLink": create_invoice_link,
    "answerPreCheckoutQuery": answer_pre_checkout_query,
    "refundStarPayment": refund_star_payment,
    "getStarTransactions": get_star_transactions,
    "editUserStarSubscription": edit_user_star_subscription,
}
