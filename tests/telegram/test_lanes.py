"""Lanes: every update of one chat waits in that chat's lane; payment queries jump the queue."""

from typing import Any

import pytest

from botter.telegram.lanes import BOT_LANE, PRIORITY_NORMAL, PRIORITY_URGENT, lane_of

CHAT = {"id": -1001000000001, "type": "channel", "title": "Premium"}
USER = {"id": 100000001, "is_bot": False, "first_name": "Ann"}
PRIVATE = {"id": 100000001, "type": "private", "first_name": "Ann"}
MESSAGE = {"message_id": 5, "date": 1700000000, "chat": CHAT, "text": "hi"}
MEMBER_UPDATE = {
    "chat": CHAT,
    "from": USER,
    "date": 1700000000,
    "old_chat_member": {"user": USER, "status": "left"},
    "new_chat_member": {"user": USER, "status": "member"},
}
CHAT_LANE = ("chat:-1001000000001", PRIORITY_NORMAL)
USER_LANE = ("chat:100000001", PRIORITY_NORMAL)


@pytest.mark.parametrize(
    "kind",
    [
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_message",
        "edited_business_message",
        "message_reaction",
        "message_reaction_count",
    ],
)
def test_messages_wait_in_their_chats_lane(kind: str) -> None:
    assert lane_of({"update_id": 1, kind: MESSAGE}) == CHAT_LANE


def test_a_private_message_waits_in_the_users_chat_lane() -> None:
    update = {"update_id": 1, "message": {**MESSAGE, "chat": PRIVATE, "from": USER}}
    assert lane_of(update) == USER_LANE


@pytest.mark.parametrize("kind", ["chat_member", "my_chat_member"])
def test_member_updates_wait_in_their_chats_lane(kind: str) -> None:
    assert lane_of({"update_id": 1, kind: MEMBER_UPDATE}) == CHAT_LANE


def test_a_join_request_waits_in_its_chats_lane() -> None:
    request = {"chat": CHAT, "from": USER, "user_chat_id": USER["id"], "date": 1700000000}
    assert lane_of({"update_id": 1, "chat_join_request": request}) == CHAT_LANE


@pytest.mark.parametrize("kind", ["chat_boost", "removed_chat_boost"])
def test_boosts_wait_in_their_chats_lane(kind: str) -> None:
    assert lane_of({"update_id": 1, kind: {"chat": CHAT, "boost_id": "b"}}) == CHAT_LANE


def test_a_callback_query_waits_in_the_lane_of_its_messages_chat() -> None:
    query = {"id": "q1", "from": USER, "chat_instance": "c", "data": "buy", "message": MESSAGE}
    assert lane_of({"update_id": 1, "callback_query": query}) == CHAT_LANE


@pytest.mark.parametrize("message", [None, "absent"])
def test_a_callback_query_without_message_waits_in_the_users_lane(message: object) -> None:
    query: dict[str, Any] = {"id": "q1", "from": USER, "chat_instance": "c", "data": "buy"}
    if message is None:
        query["message"] = None
    query["inline_message_id"] = "inline-1"
    assert lane_of({"update_id": 1, "callback_query": query}) == USER_LANE


@pytest.mark.parametrize("kind", ["inline_query", "chosen_inline_result", "shipping_query"])
def test_user_updates_wait_in_the_users_lane(kind: str) -> None:
    assert lane_of({"update_id": 1, kind: {"id": "x", "from": USER, "query": ""}}) == USER_LANE


def test_a_pre_checkout_query_is_urgent_and_waits_for_nobody() -> None:
    query = {
        "id": "pcq1",
        "from": USER,
        "currency": "XTR",
        "total_amount": 5,
        "invoice_payload": "o1.AAAAAAAAAAAAAAAA",
    }

    first = lane_of({"update_id": 41, "pre_checkout_query": query})
    second = lane_of({"update_id": 42, "pre_checkout_query": query})

    assert first == ("pcq:41", PRIORITY_URGENT)
    assert second == ("pcq:42", PRIORITY_URGENT)
    # Not the lane of the buyer's chat, where a backlog of messages may wait.
    assert first[0] != USER_LANE[0]
    assert PRIORITY_URGENT < PRIORITY_NORMAL


@pytest.mark.parametrize("update_id", [None, True, False, "41", 41.0, [41]])
def test_a_pre_checkout_query_with_a_bad_update_id_is_still_urgent(update_id: object) -> None:
    update: dict[str, Any] = {"pre_checkout_query": {"id": "pcq1", "from": USER}}
    if update_id is not None:
        update["update_id"] = update_id
    assert lane_of(update) == (BOT_LANE, PRIORITY_URGENT)


@pytest.mark.parametrize(
    "update",
    [
        pytest.param({"update_id": 1}, id="no-payload"),
        pytest.param({}, id="empty"),
        pytest.param({"update_id": 1, "poll": {"id": "p"}}, id="poll"),
        pytest.param(
            {"update_id": 1, "poll_answer": {"poll_id": "p", "user": USER}}, id="poll-ans"
        ),
        pytest.param({"update_id": 1, "purchased_paid_media": {"from": USER}}, id="paid-media"),
        pytest.param({"update_id": 1, "brand_new_kind": {"chat": CHAT}}, id="future-kind"),
    ],
)
def test_unknown_shapes_go_to_the_bots_lane(update: dict[str, Any]) -> None:
    assert lane_of(update) == (BOT_LANE, PRIORITY_NORMAL)


@pytest.mark.parametrize(
    "update",
    [
        pytest.param({"message": None}, id="message-null"),
        pytest.param({"message": "text"}, id="message-string"),
        pytest.param({"message": []}, id="message-list"),
        pytest.param({"message": {}}, id="message-empty"),
        pytest.param({"message": {"chat": None}}, id="chat-null"),
        pytest.param({"message": {"chat": -100}}, id="chat-is-a-number"),
        pytest.param({"message": {"chat": {}}}, id="chat-without-id"),
        pytest.param({"message": {"chat": {"id": True}}}, id="id-true"),
        pytest.param({"message": {"chat": {"id": False}}}, id="id-false"),
        pytest.param({"message": {"chat": {"id": "-100"}}}, id="id-string"),
        pytest.param({"message": {"chat": {"id": -100.0}}}, id="id-float"),
        pytest.param({"message": {"chat": {"id": None}}}, id="id-null"),
        pytest.param({"chat_member": {"chat": {"id": True}}}, id="member-id-bool"),
        pytest.param({"chat_join_request": {"chat": {"id": "1"}}}, id="join-id-string"),
        pytest.param({"callback_query": None}, id="callback-null"),
        pytest.param({"callback_query": "x"}, id="callback-string"),
        pytest.param({"callback_query": {}}, id="callback-empty"),
        pytest.param({"callback_query": {"from": {"id": True}}}, id="callback-from-bool"),
        pytest.param({"callback_query": {"message": "x", "from": USER}}, id="callback-msg-string"),
        pytest.param({"callback_query": {"message": {"chat": {"id": "1"}}}}, id="cb-chat-str"),
        pytest.param({"inline_query": {"from": {"id": "100"}}}, id="inline-from-string"),
        pytest.param({"inline_query": {"from": {"id": False}}}, id="inline-from-bool"),
        pytest.param({"inline_query": None}, id="inline-null"),
    ],
)
def test_malformed_values_go_to_the_bots_lane(update: dict[str, Any]) -> None:
    assert lane_of({"update_id": 1, **update}) == (BOT_LANE, PRIORITY_NORMAL)


def test_chat_id_zero_is_still_a_chat() -> None:
    assert lane_of({"update_id": 1, "message": {"chat": {"id": 0}}}) == ("chat:0", PRIORITY_NORMAL)


def test_lanes_are_stable_for_the_same_chat() -> None:
    member = lane_of({"update_id": 1, "chat_member": MEMBER_UPDATE})
    post = lane_of({"update_id": 2, "channel_post": MESSAGE})

    assert member == post == CHAT_LANE
