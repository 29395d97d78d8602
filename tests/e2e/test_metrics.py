"""The numbers operators watch, visible on a running deployment after the paid-access flow."""

import re

import httpx

from tests.e2e.conftest import Shop, eventually


def scrape(url: str) -> dict[str, float]:
    """Every sample of a /metrics page: `name{labels}` → value."""
    samples = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_after_a_purchase_count_it_and_carry_no_ids(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 7, period_s=30 * 86400)
    sam = shop.subscriber()
    sam.join(sam.buy(plan_id)["invite_link"])
    worker_url = f"http://127.0.0.1:{shop.stack.env['WORKER_METRICS_PORT']}/metrics"

    def counted() -> dict[str, float] | None:
        samples = scrape(worker_url)
        done = samples.get('botter_updates_processed_total{outcome="done"}', 0)
        # Queue gauges come from the leader, which may have changed hands a moment ago.
        sampled = 'botter_jobs_queued{queue="urgent"}' in samples
        return samples if done and sampled else None

    worker = eventually(counted, timeout_s=60, what="the worker's metrics")
    web = scrape(f"{shop.stack.web_url}/metrics")

    assert worker['botter_payments_total{status="completed"}'] >= 1
    assert worker["botter_revenue_stars_total"] >= 7
    assert worker['botter_access_changes_total{change="granted"}'] >= 1
    assert worker['botter_jobs_finished_total{kind="deliver_access",outcome="done"}'] >= 1
    assert worker['botter_telegram_calls_total{method="createChatInviteLink",outcome="ok"}'] >= 1
    assert worker["botter_update_lag_seconds_count"] >= 1
    assert worker["botter_payments_without_grant"] == 0
    assert 'botter_jobs_queued{queue="urgent"}' in worker
    assert web['botter_updates_received_total{outcome="stored"}'] >= 1
    route = 'route="/webhook/telegram/{bot_id}"'
    assert any(route in name for name in web)

    ids = {str(shop.bot_id), str(sam.user_id), str(shop.chat_id)}
    labels = " ".join(re.findall(r"\{[^}]*\}", " ".join([*worker, *web])))
    assert not [found for found in ids if found in labels]
