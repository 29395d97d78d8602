"""bench.loadtest against botter as it runs in production, through the sandbox."""

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Stack, live, stack  # noqa: F401 - fixtures used by name

PURCHASES = 20
CONCURRENCY = 5


def test_purchases_complete_exactly_once(live: Stack, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "loadtest.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.loadtest",
            "--web-url", live.web_url, "--sandbox-url", live.sandbox_url,
            "--scenario", "purchases", "--count", str(PURCHASES),
            "--concurrency", str(CONCURRENCY), "--json", str(out),
        ],
        env=live.env,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads(out.read_text())
    purchases = results["scenarios"]["purchases"]
    assert purchases["completed"] == PURCHASES, purchases
    assert purchases["errors"] == 0, purchases["error_kinds"]
    assert results["purchases_check"] == {
        "purchases": PURCHASES,
        "payments": PURCHASES,
        "buyers_without_payment": 0,
        "buyers_paying_twice": 0,
        "buyers_with_links_not_one": 0,
    }
    bot_ids = [shop["bot_id"] for shop in results["shops"]]
    payments = live.scalar("SELECT count(*) FROM payments WHERE bot_id = ANY(:ids)", ids=bot_ids)
    assert payments == PURCHASES
    assert set(results["inbox"]) == {"done"}, results["inbox"]
    assert "purchases: 20 completed, 20 payments recorded" in done.stdout
    assert done.stdout.rstrip().endswith("OK")
