"""Update delivery: webhooks with retries and order per chat, long polling, redelivery."""

import concurrent.futures
import time

from tests.sandbox.conftest import Receiver, World

SECRET = "s3cret_Token-1"


def set_webhook(world: World, receiver: Receiver, **extra: object) -> None:
    assert world.tg.ok(world.token, "setWebhook", url=receiver.url, secret_token=SECRET, **extra)


def drained_webhook_info(world: World, timeout_s: float = 5) -> dict[str, object]:
    """getWebhookInfo once nothing is pending: the receiver can see an update a moment
    before the sandbox has read its 200 and dropped it from the queue."""
    deadline = time.monotonic() + timeout_s
    info: dict[str, object] = world.tg.ok(world.token, "getWebhookInfo")
    while info["pending_update_count"] != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
        info = world.tg.ok(world.token, "getWebhookInfo")
    return info


def test_webhook_delivery_carries_the_secret_and_json(world: World, receiver: Receiver) -> None:
    set_webhook(world, receiver)
    sent = world.tg.start(world.user_id, world.bot_id)
    [update] = receiver.wait_for(1)
    assert update["update_id"] == sent["update_id"]
    assert update["message"]["text"] == "/start"
    assert receiver.headers[0]["x-telegram-bot-api-secret-token"] == SECRET
    assert receiver.headers[0]["content-type"] == "application/json"
    info = drained_webhook_info(world)
    assert info["url"] == receiver.url
    assert info["pending_update_count"] == 0
    assert info["max_connections"] == 40


def test_failed_delivery_is_retried_and_reported(world: World, receiver: Receiver) -> None:
    receiver.statuses = [500, 500]
    set_webhook(world, receiver)
    world.tg.start(world.user_id, world.bot_id)
    deadline = time.monotonic() + 5
    info = world.tg.ok(world.token, "getWebhookInfo")
    while "last_error_message" not in info and time.monotonic() < deadline:
        time.sleep(0.05)
        info = world.tg.ok(world.token, "getWebhookInfo")
    assert info["pending_update_count"] == 1
    assert (
        info["last_error_message"] == "Wrong response from the webhook: 500 Internal Server Error"
    )
    assert info["last_error_date"] > 0
    [update] = receiver.wait_for(1, timeout_s=10)
    assert update["message"]["text"] == "/start"
    assert len(receiver.headers) == 3  # two failures, then success
    assert drained_webhook_info(world)["pending_update_count"] == 0


def test_one_chat_in_order_even_across_a_retry(world: World, receiver: Receiver) -> None:
    receiver.statuses = [503]
    set_webhook(world, receiver)
    texts = ["/start", "one", "two"]
    for text in texts:
        world.tg.start(world.user_id, world.bot_id, text)
    received = receiver.wait_for(3, timeout_s=10)
    assert [u["message"]["text"] for u in received] == texts


def test_a_hanging_chat_does_not_block_other_chats(world: World, receiver: Receiver) -> None:
    set_webhook(world, receiver)
    receiver.delay_s = 3
    world.tg.start(world.user_id, world.bot_id, "slow")
    time.sleep(0.2)
    receiver.delay_s = 0
    other = world.tg.user("Ben")
    started = time.monotonic()
    world.tg.start(other, world.bot_id, "fast")
    receiver.wait_for(1, timeout_s=10)
    assert time.monotonic() - started < 2.5
    assert receiver.received[0]["message"]["text"] == "fast"
    receiver.wait_for(2, timeout_s=10)


def test_getupdates_conflicts_with_a_webhook(world: World, receiver: Receiver) -> None:
    set_webhook(world, receiver)
    code, description = world.tg.error(world.token, "getUpdates")
    assert code == 409
    assert description.startswith("Conflict: can't use getUpdates method while webhook is active")
    assert world.tg.ok(world.token, "deleteWebhook") is True
    assert world.tg.ok(world.token, "getUpdates") == []


def test_updates_wait_for_polling_after_delete_webhook(world: World, receiver: Receiver) -> None:
    receiver.statuses = [500] * 50
    set_webhook(world, receiver)
    world.tg.start(world.user_id, world.bot_id, "kept")
    world.tg.ok(world.token, "deleteWebhook")
    [update] = world.tg.drain(world.token)
    assert update["message"]["text"] == "kept"


def test_drop_pending_updates(world: World, receiver: Receiver) -> None:
    world.tg.start(world.user_id, world.bot_id, "old")
    set_webhook(world, receiver, drop_pending_updates=True)
    world.tg.start(world.user_id, world.bot_id, "new")
    [update] = receiver.wait_for(1)
    assert update["message"]["text"] == "new"


def test_webhook_rules(world: World) -> None:
    bad_secret = world.tg.error(
        world.token, "setWebhook", url="https://example.test/h", secret_token="no spaces!"
    )
    assert bad_secret == (400, "Bad Request: secret token contains unallowed characters")
    too_many = world.tg.error(
        world.token, "setWebhook", url="https://example.test/h", max_connections=101
    )
    assert too_many[0] == 400
    assert world.tg.error(world.token, "setWebhook", url="ftp://x")[0] == 400


def test_webhook_reply_runs_a_method(world: World, receiver: Receiver) -> None:
    receiver.reply = (
        b'{"method": "sendMessage", "chat_id": %d, "text": "Choose a plan"}' % world.user_id
    )
    set_webhook(world, receiver)
    world.tg.start(world.user_id, world.bot_id)
    receiver.wait_for(1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        listed = world.tg.look(f"/users/{world.user_id}/messages", bot_id=world.bot_id)
        if listed:
            break
        time.sleep(0.05)
    assert [m["text"] for m in listed] == ["Choose a plan"]


def test_allowed_updates_filter_webhook_delivery(world: World, receiver: Receiver) -> None:
    set_webhook(world, receiver, allowed_updates=["chat_member"])
    world.tg.start(world.user_id, world.bot_id, "ignored")
    link = world.tg.ok(world.token, "createChatInviteLink", chat_id=world.chat_id, member_limit=1)
    world.tg.control(f"/users/{world.user_id}/join", {"invite_link": link["invite_link"]})
    [update] = receiver.wait_for(1)
    assert "chat_member" in update
    assert world.tg.ok(world.token, "getWebhookInfo")["allowed_updates"] == ["chat_member"]


def test_long_polling_waits_for_an_update(world: World) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(world.tg.updates, world.token, timeout=10)
        time.sleep(0.3)
        world.tg.start(world.user_id, world.bot_id, "wake")
        [update] = waiting.result(timeout=5)
    assert update["message"]["text"] == "wake"


def test_long_polling_times_out_empty(world: World) -> None:
    started = time.monotonic()
    assert world.tg.updates(world.token, timeout=1) == []
    assert time.monotonic() - started >= 0.9


def test_a_second_poller_ends_the_first_with_409(world: World) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(world.tg.api, world.token, "getUpdates", timeout=10)
        time.sleep(0.3)
        assert world.tg.updates(world.token, timeout=0) == []
        envelope = first.result(timeout=5)
    assert envelope["error_code"] == 409
    assert envelope["description"].startswith("Conflict: terminated by other getUpdates request")


def test_offset_confirms_and_limit_caps(world: World) -> None:
    for text in ("/start", "a", "b"):
        world.tg.start(world.user_id, world.bot_id, text)
    first, second, third = world.tg.updates(world.token)
    assert first["update_id"] < second["update_id"] < third["update_id"]
    assert world.tg.updates(world.token, limit=1) == [first]
    assert world.tg.updates(world.token, offset=second["update_id"]) == [second, third]
    assert world.tg.updates(world.token) == [second, third]


def test_redeliver_same_and_new_update_id(world: World) -> None:
    sent = world.tg.start(world.user_id, world.bot_id)
    [original] = world.tg.drain(world.token)
    same = world.tg.control(
        f"/bots/{world.bot_id}/redeliver", {"update_id": sent["update_id"], "new_update_id": False}
    )
    assert same == {"update_id": sent["update_id"]}
    assert world.tg.drain(world.token) == [original]
    fresh = world.tg.control(
        f"/bots/{world.bot_id}/redeliver", {"update_id": sent["update_id"], "new_update_id": True}
    )
    assert fresh["update_id"] > sent["update_id"]
    [copy] = world.tg.drain(world.token)
    assert copy["update_id"] == fresh["update_id"]
    assert copy["message"] == original["message"]
    missing = world.tg.control(f"/bots/{world.bot_id}/redeliver", {"update_id": 1}, status=404)
    assert "error" in missing


def test_redelivery_over_webhook(world: World, receiver: Receiver) -> None:
    set_webhook(world, receiver)
    sent = world.tg.start(world.user_id, world.bot_id)
    receiver.wait_for(1)
    world.tg.control(f"/bots/{world.bot_id}/redeliver", {"update_id": sent["update_id"]})
    first, second = receiver.wait_for(2)
    assert first == second
