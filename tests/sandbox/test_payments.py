"""Telegram Stars: invoices, the pre-checkout handshake, charges, refunds, transactions."""

import concurrent.futures
import time
from typing import Any

import pytest

from tests.sandbox.conftest import Telegram, World

PRICE = [{"label": "30 days", "amount": 250}]


def invoice(world: World, **overrides: Any) -> dict[str, Any]:
    world.tg.start(world.user_id, world.bot_id)
    params = {
        "chat_id": world.user_id,
        "title": "Premium, 30 days",
        "description": "Access to the Premium channel",
        "payload": "order:1:sig",
        "currency": "XTR",
        "prices": PRICE,
        **overrides,
    }
    sent: dict[str, Any] = world.tg.ok(world.token, "sendInvoice", **params)
    world.tg.drain(world.token)
    return sent


def stars(tg: Telegram, user_id: int) -> int:
    return int(tg.look(f"/users/{user_id}")["stars"])


def next_pre_checkout_query(world: World) -> dict[str, Any]:
    """Poll until the pre_checkout_query arrives; earlier updates stay unconfirmed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for update in world.tg.updates(world.token, timeout=1):
            if "pre_checkout_query" in update:
                return update
        time.sleep(0.02)
    raise AssertionError("no pre_checkout_query arrived")


def pay_while_answering(
    world: World, body: dict[str, Any], ok: bool = True, error_message: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pay as the user while the bot answers the pre_checkout_query; both results."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        paying = pool.submit(world.tg.control, f"/users/{world.user_id}/pay", body)
        update = next_pre_checkout_query(world)
        query = update["pre_checkout_query"]
        answer: dict[str, Any] = {"pre_checkout_query_id": query["id"], "ok": ok}
        if error_message:
            answer["error_message"] = error_message
        world.tg.ok(world.token, "answerPreCheckoutQuery", **answer)
        world.tg.updates(world.token, offset=update["update_id"] + 1)
        return paying.result(timeout=15), query


def test_send_invoice_renders_the_invoice(world: World) -> None:
    sent = invoice(world)
    assert sent["invoice"] == {
        "title": "Premium, 30 days",
        "description": "Access to the Premium channel",
        "start_parameter": "",
        "currency": "XTR",
        "total_amount": 250,
    }


def test_paid_invoice_charges_once_and_sends_successful_payment(world: World) -> None:
    sent = invoice(world)
    before = stars(world.tg, world.user_id)
    paid, query = pay_while_answering(
        world, {"bot_id": world.bot_id, "message_id": sent["message_id"]}
    )
    assert query["invoice_payload"] == "order:1:sig"
    assert (query["currency"], query["total_amount"]) == ("XTR", 250)
    assert paid["status"] == "paid"
    assert paid["telegram_payment_charge_id"].startswith("stx")
    assert stars(world.tg, world.user_id) == before - 250
    [update] = world.tg.drain(world.token)
    assert update["update_id"] == paid["update_id"]
    payment = update["message"]["successful_payment"]
    assert payment["telegram_payment_charge_id"] == paid["telegram_payment_charge_id"]
    assert payment["invoice_payload"] == "order:1:sig"
    assert (payment["currency"], payment["total_amount"]) == ("XTR", 250)
    assert payment["provider_payment_charge_id"]
    again = world.tg.control(
        f"/users/{world.user_id}/pay",
        {"bot_id": world.bot_id, "message_id": sent["message_id"]},
        status=409,
    )
    assert "already paid" in again["error"]
    listed = world.tg.look(f"/users/{world.user_id}/messages", bot_id=world.bot_id)
    assert "successful_payment" in listed[-1]


def test_charge_ids_are_unique(world: World) -> None:
    link = world.tg.ok(
        world.token,
        "createInvoiceLink",
        title="Premium",
        description="30 days",
        payload="order:2",
        currency="XTR",
        prices=PRICE,
    )
    charge_ids = {
        pay_while_answering(world, {"invoice_link": link})[0]["telegram_payment_charge_id"]
        for _ in range(3)
    }
    assert len(charge_ids) == 3


def test_declined_pre_checkout_leaves_no_charge(world: World) -> None:
    sent = invoice(world)
    before = stars(world.tg, world.user_id)
    declined, _ = pay_while_answering(
        world,
        {"bot_id": world.bot_id, "message_id": sent["message_id"]},
        ok=False,
        error_message="This plan is no longer sold",
    )
    assert declined == {"status": "declined", "error_message": "This plan is no longer sold"}
    assert stars(world.tg, world.user_id) == before
    assert world.tg.drain(world.token) == []
    transactions = world.tg.ok(world.token, "getStarTransactions")
    assert transactions == {"transactions": []}


def test_refusal_needs_an_error_message(world: World) -> None:
    code, _ = world.tg.error(
        world.token, "answerPreCheckoutQuery", pre_checkout_query_id="1", ok=False
    )
    assert code == 400


def test_not_enough_stars_never_reaches_the_bot(tg: Telegram, world: World) -> None:
    poor = tg.user("Pat", stars=10)
    world.tg.start(poor, world.bot_id)
    sent = world.tg.ok(
        world.token,
        "sendInvoice",
        chat_id=poor,
        title="Premium",
        description="30 days",
        payload="order:3",
        currency="XTR",
        prices=PRICE,
    )
    world.tg.drain(world.token)
    answer = tg.control(
        f"/users/{poor}/pay", {"bot_id": world.bot_id, "message_id": sent["message_id"]}
    )
    assert answer == {"status": "declined", "error_message": "not enough Stars"}
    assert world.tg.drain(world.token) == []


@pytest.mark.slow
def test_pre_checkout_deadline_is_ten_seconds(world: World) -> None:
    sent = invoice(world)
    before = stars(world.tg, world.user_id)
    started = time.monotonic()
    answer = world.tg.control(
        f"/users/{world.user_id}/pay", {"bot_id": world.bot_id, "message_id": sent["message_id"]}
    )
    assert answer["status"] == "timeout"
    assert time.monotonic() - started >= 9.5
    [update] = world.tg.drain(world.token)
    late = world.tg.error(
        world.token,
        "answerPreCheckoutQuery",
        pre_checkout_query_id=update["pre_checkout_query"]["id"],
        ok=True,
    )
    assert late == (
        400,
        "Bad Request: query is too old and response timeout expired or query ID is invalid",
    )
    assert stars(world.tg, world.user_id) == before


def test_invoice_rules(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    base = {
        "chat_id": world.user_id,
        "title": "Premium",
        "description": "30 days",
        "payload": "order",
        "currency": "XTR",
        "prices": PRICE,
    }
    two_prices = [*PRICE, {"label": "tip", "amount": 1}]
    assert world.tg.error(world.token, "sendInvoice", **{**base, "prices": two_prices})[0] == 400
    assert world.tg.error(world.token, "sendInvoice", **{**base, "currency": "USD"})[0] == 400
    long_payload = {**base, "payload": "p" * 129}
    assert world.tg.error(world.token, "sendInvoice", **long_payload)[0] == 400
    missing = {key: value for key, value in base.items() if key != "payload"}
    assert world.tg.error(world.token, "sendInvoice", **missing) == (
        400,
        'Bad Request: parameter "payload" is required',
    )
    sub = {key: value for key, value in base.items() if key != "chat_id"}
    weekly = world.tg.error(world.token, "createInvoiceLink", **sub, subscription_period=604_800)
    assert weekly == (400, "Bad Request: SUBSCRIPTION_PERIOD_INVALID")
    pricey = [{"label": "30 days", "amount": 10_001}]
    too_much = world.tg.error(
        world.token,
        "createInvoiceLink",
        **{**sub, "prices": pricey},
        subscription_period=2_592_000,
    )
    assert too_much == (400, "Bad Request: SUBSCRIPTION_PRICE_INVALID")


def test_subscription_invoice_link_is_recurring(world: World) -> None:
    link = world.tg.ok(
        world.token,
        "createInvoiceLink",
        title="Premium",
        description="Monthly",
        payload="sub:1",
        currency="XTR",
        prices=PRICE,
        subscription_period=2_592_000,
    )
    assert link.startswith("https://t.me/$")
    paid, _ = pay_while_answering(world, {"invoice_link": link})
    [update] = world.tg.drain(world.token)
    payment = update["message"]["successful_payment"]
    assert payment["is_recurring"] is True
    assert payment["is_first_recurring"] is True
    assert payment["subscription_expiration_date"] >= time.time() + 2_592_000 - 60
    charge = {
        "user_id": world.user_id,
        "telegram_payment_charge_id": paid["telegram_payment_charge_id"],
    }
    assert world.tg.ok(world.token, "editUserStarSubscription", **charge, is_canceled=True)
    assert (
        world.tg.error(world.token, "editUserStarSubscription", **charge, is_canceled=True)[0]
        == 400
    )
    assert world.tg.ok(world.token, "editUserStarSubscription", **charge, is_canceled=False)


def test_refund_returns_stars_and_shows_refunded_payment(world: World) -> None:
    sent = invoice(world)
    before = stars(world.tg, world.user_id)
    paid, _ = pay_while_answering(
        world, {"bot_id": world.bot_id, "message_id": sent["message_id"]}
    )
    world.tg.drain(world.token)
    charge = {
        "user_id": world.user_id,
        "telegram_payment_charge_id": paid["telegram_payment_charge_id"],
    }
    assert world.tg.ok(world.token, "refundStarPayment", **charge) is True
    assert stars(world.tg, world.user_id) == before
    [update] = world.tg.drain(world.token)
    refunded = update["message"]["refunded_payment"]
    assert refunded["telegram_payment_charge_id"] == paid["telegram_payment_charge_id"]
    assert refunded["total_amount"] == 250
    twice = world.tg.error(world.token, "refundStarPayment", **charge)
    assert twice == (400, "Bad Request: CHARGE_ALREADY_REFUNDED")
    forged = world.tg.error(
        world.token, "refundStarPayment", user_id=world.user_id, telegram_payment_charge_id="stxNO"
    )
    assert forged == (400, "Bad Request: CHARGE_ID_INVALID")


def test_star_transactions_list_payments_and_refunds_in_order(world: World) -> None:
    sent = invoice(world)
    paid, _ = pay_while_answering(
        world, {"bot_id": world.bot_id, "message_id": sent["message_id"]}
    )
    charge_id = paid["telegram_payment_charge_id"]
    world.tg.ok(
        world.token,
        "refundStarPayment",
        user_id=world.user_id,
        telegram_payment_charge_id=charge_id,
    )
    listed = world.tg.ok(world.token, "getStarTransactions")["transactions"]
    assert [t["id"] for t in listed] == [charge_id, charge_id]
    payment, refund = listed
    assert payment["amount"] == 250
    assert payment["source"]["type"] == "user"
    assert payment["source"]["transaction_type"] == "invoice_payment"
    assert payment["source"]["user"]["id"] == world.user_id
    assert payment["source"]["invoice_payload"] == "order:1:sig"
    assert "source" not in refund
    assert refund["receiver"]["user"]["id"] == world.user_id
    page = world.tg.ok(world.token, "getStarTransactions", offset=1, limit=1)["transactions"]
    assert page == [refund]
    assert world.tg.error(world.token, "getStarTransactions", limit=101)[0] == 400
