"""Send budgets: the decisions behind the sandbox's 429 answers."""

from botter.sandbox.ratelimit import SendBudget, TokenBucket


def test_bucket_allows_its_capacity_then_asks_to_wait() -> None:
    bucket = TokenBucket(rate_per_s=1, capacity=2)
    for _ in range(2):
        assert bucket.wait_s() == 0
        bucket.take()
    assert 0 < bucket.wait_s() <= 1


def test_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate_per_s=10, capacity=1)
    bucket.take()
    bucket.updated_at -= 0.2
    assert bucket.wait_s() == 0


def test_chat_budget_is_per_chat_and_retry_after_is_whole_seconds() -> None:
    budget = SendBudget(bot_per_s=30, chat_per_s=1, chat_burst=3, group_per_min=20)
    assert [budget.try_send(1, 10, is_group=False) for _ in range(3)] == [0, 0, 0]
    assert budget.try_send(1, 10, is_group=False) == 1
    assert budget.try_send(1, 11, is_group=False) == 0
    assert budget.try_send(2, 10, is_group=False) == 0


def test_bot_budget_spans_chats() -> None:
    budget = SendBudget(bot_per_s=30, chat_per_s=1, chat_burst=3, group_per_min=20)
    answers = [budget.try_send(1, chat_id, is_group=False) for chat_id in range(31)]
    assert answers[:30] == [0] * 30
    assert answers[30] >= 1


def test_group_budget_is_twenty_per_minute() -> None:
    budget = SendBudget(bot_per_s=1000, chat_per_s=1000, chat_burst=1000, group_per_min=20)
    answers = [budget.try_send(1, -100, is_group=True) for _ in range(21)]
    assert answers[:20] == [0] * 20
    assert answers[20] == 3  # one token of a 20/min bucket takes 3 s
