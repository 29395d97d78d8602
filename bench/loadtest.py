"""End-to-end load through the Telegram sandbox against a running botter.

    .venv/bin/python -m bench.loadtest --web-url http://127.0.0.1:3000 \\
        --sandbox-url http://127.0.0.1:8081 [--scenario storm|start-flood|purchases|all] \\
        [--count N] [--seconds S] [--concurrency C] [--bots B] [--json FILE]

Users act through the sandbox's control API, as people do in Telegram; the sandbox
delivers their updates to botter's webhook, botter's workers answer through the Bot API,
and an action counts as done once its answer is visible in the user's chat
(`GET /sandbox/users/{id}/messages`). Latency is from the user's action to that moment.

Scenarios:
- storm: many users send commands and chatter (/start, /status, /terms, /paysupport, text);
- start-flood: that many new users each send /start once;
- purchases: each user picks a plan, pays in Stars and waits for the invite link.

The script sets up its own shop(s): a sandbox bot, a channel and a plan, registered in
botter with botter.admin, so it needs the same DATABASE_URL, REDIS_URL and
BOTTER_SECRET_KEYS as the running botter, from the environment. Loopback addresses only.
"""

import argparse
import asyncio
import collections
import json
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

SCENARIOS: Final = ("storm", "start-flood", "purchases")
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})
PLAN_PRICE_STARS: Final = 50
PLAN_PERIOD_S: Final = 30 * 86400
# A storm's texts: the commands botter answers, and chatter it leaves unanswered.
STORM_TEXTS: Final = (
    ("/start", True),
    ("/status", True),
    ("/terms", True),
    ("/paysupport", True),
    ("hello, is anyone there?", False),
)
STORM_USERS_PER_WORKER: Final = 20

console = Console(stderr=True)


class LoadTestError(Exception):
    """An action that did not complete; the message says which step and why."""


# ---------------------------------------------------------------------------------------
# The sandbox, as users and as Telegram's owner of the world.


class Sandbox:
    def __init__(self, url: str, http: httpx.AsyncClient, poll_s: float, timeout_s: float):
        self.url = url
        self.http = http
        self.poll_s = poll_s
        self.timeout_s = timeout_s

    async def control(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.http.post(f"{self.url}/sandbox{path}", json=body)
        if response.status_code != 200:
            raise LoadTestError(f"POST {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def look(self, path: str, **query: Any) -> Any:
        response = await self.http.get(f"{self.url}/sandbox{path}", params=query)
        if response.status_code != 200:
            raise LoadTestError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()

    async def messages(self, user_id: int, bot_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self.look(f"/users/{user_id}/messages", bot_id=bot_id)
        return found

    async def wait_for(
        self,
        user_id: int,
        bot_id: int,
        matches: Callable[[dict[str, Any]], bool],
        after: int,
        what: str,
    ) -> tuple[dict[str, Any], int]:
        """The first message past the `after` first ones that `matches`, and its index."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            found = await self.messages(user_id, bot_id)
            for index in range(after, len(found)):
                if matches(found[index]):
                    return found[index], index
            if time.monotonic() > deadline:
                raise LoadTestError(f"no {what} within {self.timeout_s:g} s")
            await asyncio.sleep(self.poll_s)


def invite_link_in(message: dict[str, Any]) -> str | None:
    for word in message.get("text", "").split():
        if word.startswith("https://t.me/+"):
            return word
    return None


def plan_button_in(message: dict[str, Any], plan_id: int) -> bool:
    rows = message.get("reply_markup", {}).get("inline_keyboard", [])
    wanted = f"plan:{plan_id}"
    return any(button.get("callback_data") == wanted for row in rows for button in row)


# ---------------------------------------------------------------------------------------
# Shops: registered in botter as `botter bot add`, `chat add`, `plan add` would.


@dataclass(frozen=True)
class Shop:
    bot_id: int
    chat_id: int
    plan_id: int


async def open_shop(sandbox: Sandbox, runtime: Any, tag: str) -> Shop:
    from botter import admin

    bot = await sandbox.control("/bots", {"username": f"load_{tag}_bot"})
    owner = await sandbox.control("/users", {"first_name": "Olga"})
    chat = await sandbox.control(
        "/chats", {"type": "channel", "title": "Premium", "owner_id": owner["id"]}
    )
    await sandbox.control(f"/chats/{chat['id']}/admins", {"user_id": bot["id"]})
    creator_id = await admin.default_creator(runtime, f"load test {tag}")
    await admin.add_bot(runtime, bot["token"], creator_id)
    await admin.add_chat(runtime, bot["id"], chat["id"])
    plan = await admin.add_plan(
        runtime, bot["id"], [chat["id"]], "Premium, 30 days", PLAN_PRICE_STARS, PLAN_PERIOD_S, []
    )
    return Shop(bot["id"], chat["id"], int(plan["id"]))


def runtime_settings(web_url: str, sandbox_url: str) -> Any:
    from botter.config import load_settings

    missing = [name for name in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(name)]
    if missing:
        raise SystemExit(f"loadtest: set {' and '.join(missing)} as the running botter has them")
    if not os.environ.get("BOTTER_SECRET_KEYS"):
        raise SystemExit("loadtest: set BOTTER_SECRET_KEYS as the running botter has them")
    return load_settings(telegram_api_url=sandbox_url, public_url=web_url)


# ---------------------------------------------------------------------------------------
# Actions: one user's step(s), timed from the first action to the last answer.


@dataclass
class Outcome:
    """What the runs of one scenario produced."""

    scenario: str
    latencies_s: list[float] = field(default_factory=list)
    steps_s: dict[str, list[float]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    unanswered: int = 0
    buyers: list[tuple[int, int]] = field(default_factory=list)  # (bot_id, user_id)
    elapsed_s: float = 0.0


async def new_user(sandbox: Sandbox, name: str = "Sam") -> int:
    user = await sandbox.control("/users", {"first_name": name, "stars": 10_000})
    return int(user["id"])


async def say(sandbox: Sandbox, shop: Shop, user_id: int, text: str) -> None:
    """Send `text`, expecting no answer."""
    await sandbox.control(f"/users/{user_id}/send", {"bot_id": shop.bot_id, "text": text})


async def ask(sandbox: Sandbox, shop: Shop, user_id: int, text: str) -> float:
    """Send `text` and wait for the bot's next message; the seconds it took."""
    seen = len(await sandbox.messages(user_id, shop.bot_id))
    started_s = time.perf_counter()
    await sandbox.control(f"/users/{user_id}/send", {"bot_id": shop.bot_id, "text": text})
    await sandbox.wait_for(user_id, shop.bot_id, lambda _: True, seen, f"reply to {text!r}")
    return time.perf_counter() - started_s


async def purchase(sandbox: Sandbox, shop: Shop, outcome: Outcome) -> float:
    """/start, the plan's button, pay the invoice, receive the link; the seconds it took."""
    user_id = await new_user(sandbox)
    bot_id = shop.bot_id
    started_s = time.perf_counter()
    await sandbox.control(f"/users/{user_id}/send", {"bot_id": bot_id, "text": "/start"})
    menu, index = await sandbox.wait_for(
        user_id, bot_id, lambda m: plan_button_in(m, shop.plan_id), 0, "plan menu"
    )
    menu_s = time.perf_counter()
    await sandbox.control(
        f"/users/{user_id}/press",
        {
            "bot_id": bot_id,
            "message_id": menu["message_id"],
            "callback_data": f"plan:{shop.plan_id}",
        },
    )
    invoice, index = await sandbox.wait_for(
        user_id, bot_id, lambda m: "invoice" in m, index + 1, "invoice"
    )
    invoice_s = time.perf_counter()
    paid = await sandbox.control(
        f"/users/{user_id}/pay", {"bot_id": bot_id, "message_id": invoice["message_id"]}
    )
    if paid.get("status") != "paid":
        raise LoadTestError(f"payment not taken: {paid.get('status')} {paid.get('reason', '')}")
    paid_s = time.perf_counter()
    await sandbox.wait_for(
        user_id, bot_id, lambda m: invite_link_in(m) is not None, index + 1, "invite link"
    )
    done_s = time.perf_counter()
    outcome.buyers.append((bot_id, user_id))
    for step, (begin, end) in {
        "menu": (started_s, menu_s),
        "invoice": (menu_s, invoice_s),
        "pay (pre-checkout answered)": (invoice_s, paid_s),
        "invite link": (paid_s, done_s),
    }.items():
        outcome.steps_s[step].append(end - begin)
    return done_s - started_s


# ---------------------------------------------------------------------------------------
# Running a scenario: C workers, bounded by count and by time, with a progress bar.


@dataclass
class Bounds:
    count: int
    seconds: float | None
    concurrency: int


async def run_scenario(
    name: str, sandbox: Sandbox, shops: list[Shop], bounds: Bounds, progress: Progress
) -> Outcome:
    outcome = Outcome(name)
    task = progress.add_task(name, total=bounds.count)
    numbers = iter(range(bounds.count))
    deadline_s = time.monotonic() + bounds.seconds if bounds.seconds else None
    action = make_action(name, sandbox, outcome)

    async def worker(worker_index: int) -> None:
        for number in numbers:
            if deadline_s is not None and time.monotonic() > deadline_s:
                return
            shop = shops[number % len(shops)]
            try:
                latency_s = await action(worker_index, number, shop)
            except (LoadTestError, httpx.HTTPError) as error:
                outcome.errors[describe(error)] += 1
            else:
                if latency_s is None:
                    outcome.unanswered += 1
                else:
                    outcome.latencies_s.append(latency_s)
            progress.advance(task)

    started_s = time.perf_counter()
    await asyncio.gather(*(worker(index) for index in range(bounds.concurrency)))
    outcome.elapsed_s = time.perf_counter() - started_s
    return outcome


Action = Callable[[int, int, Shop], Awaitable[float | None]]


def make_action(name: str, sandbox: Sandbox, outcome: Outcome) -> Action:
    if name == "purchases":

        async def buy(worker_index: int, number: int, shop: Shop) -> float | None:
            return await purchase(sandbox, shop, outcome)

        return buy
    if name == "start-flood":

        async def start(worker_index: int, number: int, shop: Shop) -> float | None:
            return await ask(sandbox, shop, await new_user(sandbox), "/start")

        return start
    # A storm: each worker has its own users, so one user never waits on two answers.
    users: dict[int, list[int]] = {}

    async def chatter(worker_index: int, number: int, shop: Shop) -> float | None:
        own = users.setdefault(worker_index, [])
        if len(own) < STORM_USERS_PER_WORKER:
            own.append(await new_user(sandbox))
        user_id = own[number % len(own)]
        text, answered = STORM_TEXTS[number % len(STORM_TEXTS)]
        if not answered:
            await say(sandbox, shop, user_id, text)
            return None
        return await ask(sandbox, shop, user_id, text)

    return chatter


def describe(error: Exception) -> str:
    if isinstance(error, httpx.HTTPError):
        return f"sandbox unreachable: {type(error).__name__}"
    return str(error)


# ---------------------------------------------------------------------------------------
# Checks afterwards, in botter's database and in the sandbox.


async def check_purchases(sandbox: Sandbox, runtime: Any, outcome: Outcome) -> dict[str, Any]:
    """Each completed purchase: exactly one payment recorded and one invite link sent."""
    from botter import admin

    payments_per_user: collections.Counter[tuple[int, int]] = collections.Counter()
    for bot_id in {bot_id for bot_id, _ in outcome.buyers}:
        for payment in await admin.list_payments(runtime, bot_id):
            payments_per_user[(bot_id, payment["user_id"])] += 1
    links_per_user = {}
    for bot_id, user_id in outcome.buyers:
        messages = await sandbox.messages(user_id, bot_id)
        links_per_user[(bot_id, user_id)] = sum(1 for m in messages if invite_link_in(m))
    buyers = set(outcome.buyers)
    return {
        "purchases": len(outcome.buyers),
        "payments": sum(payments_per_user.values()),
        "buyers_without_payment": sum(1 for b in buyers if payments_per_user[b] == 0),
        "buyers_paying_twice": sum(1 for b in buyers if payments_per_user[b] > 1),
        "buyers_with_links_not_one": sum(1 for b in buyers if links_per_user[b] != 1),
    }


async def check_inbox(runtime: Any, shops: list[Shop]) -> dict[str, int]:
    """The shops' updates in botter's inbox, by status, once the workers are done."""
    from sqlalchemy import text

    query = text(
        "SELECT status, count(*) FROM update_inbox WHERE bot_id = ANY(:bot_ids) GROUP BY status"
    )
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(query, {"bot_ids": [shop.bot_id for shop in shops]})).all()
    return {str(status): int(count) for status, count in rows}


async def settled_inbox(runtime: Any, shops: list[Shop], timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check_inbox(runtime, shops)
        if not found.get("pending") or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------
# The report.


def percentile_ms(values_s: list[float], fraction: float) -> float:
    if not values_s:
        return float("nan")
    ordered = sorted(values_s)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index] * 1000


def summarize(outcome: Outcome) -> dict[str, Any]:
    done = len(outcome.latencies_s) + outcome.unanswered
    summary: dict[str, Any] = {
        "completed": len(outcome.latencies_s),
        "sent_without_reply_expected": outcome.unanswered,
        "errors": sum(outcome.errors.values()),
        "error_kinds": dict(outcome.errors),
        "elapsed_s": outcome.elapsed_s,
        "per_s": done / outcome.elapsed_s if outcome.elapsed_s else 0.0,
        **latency_fields(outcome.latencies_s),
    }
    if outcome.steps_s:
        summary["steps"] = {
            step: latency_fields(values) for step, values in outcome.steps_s.items()
        }
    return summary


def latency_fields(values_s: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile_ms(values_s, 0.50),
        "p95_ms": percentile_ms(values_s, 0.95),
        "p99_ms": percentile_ms(values_s, 0.99),
    }


def print_summary(name: str, summary: dict[str, Any]) -> None:
    print(
        f"{name:<12} {summary['completed']:>6} done {summary['errors']:>4} errors "
        f"{summary['per_s']:>7.1f}/s   p50 {summary['p50_ms']:>7.0f} ms  "
        f"p95 {summary['p95_ms']:>7.0f} ms  p99 {summary['p99_ms']:>7.0f} ms"
    )
    if summary["sent_without_reply_expected"]:
        print(f"{'':<12} plus {summary['sent_without_reply_expected']} messages needing no reply")
    for step, values in summary.get("steps", {}).items():
        print(
            f"{'':<12} step {step:<28} p50 {values['p50_ms']:>7.0f} ms  "
            f"p95 {values['p95_ms']:>7.0f} ms  p99 {values['p99_ms']:>7.0f} ms"
        )
    for kind, count in summary["error_kinds"].items():
        print(f"{'':<12} error x{count}: {kind}")


# ---------------------------------------------------------------------------------------


def loopback_url(text: str) -> str:
    host = urlsplit(text).hostname or ""
    if host not in LOOPBACK:
        raise argparse.ArgumentTypeError(f"{text} is not a loopback address")
    return text.rstrip("/")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--web-url", type=loopback_url, required=True, help="botter serve")
    parser.add_argument("--sandbox-url", type=loopback_url, required=True)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--count", type=int, default=100, help="actions per scenario")
    parser.add_argument("--seconds", type=float, help="also stop each scenario after this")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--bots", type=int, default=1, help="shops to spread the users over")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="per awaited answer")
    parser.add_argument("--poll-s", type=float, default=0.05, help="how often chats are read")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.count < 1 or args.concurrency < 1 or args.bots < 1:
        parser.error("--count, --concurrency and --bots must be at least 1")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from botter.runtime import Runtime

    runtime = Runtime.start(runtime_settings(args.web_url, args.sandbox_url))
    limits = httpx.Limits(max_connections=args.concurrency * 2 + 4)
    try:
        async with httpx.AsyncClient(limits=limits, timeout=args.timeout_s + 15) as http:
            sandbox = Sandbox(args.sandbox_url, http, args.poll_s, args.timeout_s)
            await wait_healthy(http, args.web_url, args.sandbox_url)
            run_tag = secrets.token_hex(3)
            shops = [
                await open_shop(sandbox, runtime, f"{run_tag}_{index}")
                for index in range(args.bots)
            ]
            await warm_up(sandbox, shops)
            scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
            bounds = Bounds(args.count, args.seconds, args.concurrency)
            results: dict[str, Any] = {"shops": [shop.__dict__ for shop in shops]}
            with progress_bar() as progress:
                outcomes = [
                    await run_scenario(name, sandbox, shops, bounds, progress)
                    for name in scenarios
                ]
            results["scenarios"] = {o.scenario: summarize(o) for o in outcomes}
            purchases = next((o for o in outcomes if o.scenario == "purchases"), None)
            if purchases is not None:
                results["purchases_check"] = await check_purchases(sandbox, runtime, purchases)
            results["inbox"] = await settled_inbox(runtime, shops, args.timeout_s)
            return results
    finally:
        await runtime.close()


async def warm_up(sandbox: Sandbox, shops: list[Shop]) -> None:
    """One untimed /start per shop, so a worker still starting up is not measured."""
    patient = Sandbox(sandbox.url, sandbox.http, sandbox.poll_s, max(sandbox.timeout_s, 60.0))
    for shop in shops:
        user_id = await new_user(sandbox, "Warm")
        try:
            await ask(patient, shop, user_id, "/start")
        except LoadTestError as error:
            raise SystemExit(f"loadtest: bot {shop.bot_id} does not answer: {error}") from None


async def wait_healthy(http: httpx.AsyncClient, web_url: str, sandbox_url: str) -> None:
    for url in (f"{web_url}/health", f"{sandbox_url}/sandbox/health"):
        try:
            response = await http.get(url, timeout=5)
        except httpx.HTTPError as error:
            raise SystemExit(f"loadtest: {url} is unreachable ({type(error).__name__})") from None
        if response.status_code != 200:
            raise SystemExit(f"loadtest: {url} answered {response.status_code}")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def report(args: argparse.Namespace, results: dict[str, Any]) -> int:
    print(
        f"botter load test through the sandbox: {args.concurrency} concurrent users, "
        f"{args.count} actions per scenario, {args.bots} shop(s)"
    )
    for name, summary in results["scenarios"].items():
        print_summary(name, summary)
    failed = any(summary["errors"] for summary in results["scenarios"].values())
    check = results.get("purchases_check")
    if check is not None:
        print(
            f"purchases: {check['purchases']} completed, {check['payments']} payments recorded; "
            f"without payment {check['buyers_without_payment']}, paying twice "
            f"{check['buyers_paying_twice']}, not exactly one link "
            f"{check['buyers_with_links_not_one']}"
        )
        exactly_once = check["purchases"] == check["payments"] and not (
            check["buyers_without_payment"]
            or check["buyers_paying_twice"]
            or check["buyers_with_links_not_one"]
        )
        failed = failed or not exactly_once
    inbox = results["inbox"]
    print("botter inbox: " + ", ".join(f"{n} {status}" for status, n in sorted(inbox.items())))
    failed = failed or bool(inbox.get("pending") or inbox.get("dead"))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print("FAILED" if failed else "OK")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    return report(args, results)


if __name__ == "__main__":
    sys.exit(main())
