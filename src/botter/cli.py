"""The `botter` command line. Every command takes --json and then prints one JSON value."""

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer

from botter.config import SettingsError, load_settings
from botter.errors import BotterError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
bot_app = typer.Typer(no_args_is_help=True, help="Connect Telegram bots.")
chat_app = typer.Typer(no_args_is_help=True, help="Put channels and groups under the paywall.")
plan_app = typer.Typer(no_args_is_help=True, help="Define what is sold.")
subscriptions_app = typer.Typer(no_args_is_help=True, help="Who has access.")
payments_app = typer.Typer(no_args_is_help=True, help="The payments ledger.")
problems_app = typer.Typer(no_args_is_help=True, help="What a creator must fix.")
app.add_typer(bot_app, name="bot")
app.add_typer(chat_app, name="chat")
app.add_typer(plan_app, name="plan")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(payments_app, name="payments")
app.add_typer(problems_app, name="problems")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON value.")]
T = TypeVar("T")


def fail(message: str) -> NoReturn:
    typer.echo(f"botter: {message}", err=True)
    raise typer.Exit(2)


def first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def fail_on_engine_error(error: Exception) -> None:
    """PostgreSQL or Redis refused or is unreachable: one line, not a traceback."""
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError

    if isinstance(error, DBAPIError):
        fail(f"PostgreSQL: {first_line(error.orig or error)}")
    if isinstance(error, RedisError):
        fail(f"Redis: {first_line(error)}")


def emit(value: Any, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(value).decode() + "\n")
        return
    rows = value if isinstance(value, list) else [value]
    if not rows:
        typer.echo("(none)")
    for row in rows:
        typer.echo("  ".join(f"{key}={item}" for key, item in row.items()))


def with_runtime(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(runtime)` against the configured or embedded engines."""
    from botter.engines import resolve_engines
    from botter.runtime import Runtime

    async def main() -> T:
        runtime = Runtime.start(engines.settings)
        try:
            return await work(runtime)
        finally:
            await runtime.close()

    try:
        engines = resolve_engines(load_settings())
    except (SettingsError, BotterError) as error:
        fail(str(error))
    try:
        return asyncio.run(main())
    except BotterError as error:
        fail(str(error))
    except Exception as error:
        fail_on_engine_error(error)
        raise
    finally:
        engines.stop_started()


@app.callback()
def main() -> None:
    """botter: sell paid access to Telegram channels and groups for Telegram Stars."""


@app.command()
def sandbox(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    rate_limits: Annotated[
        bool, typer.Option(help="Answer 429 past 30 sends/s per bot and 1/s per chat.")
    ] = True,
    pre_checkout_timeout: Annotated[
        float, typer.Option(help="Seconds a bot has to answer a pre_checkout_query.")
    ] = 10.0,
    webhook_retry_max: Annotated[
        float, typer.Option(help="Cap, in seconds, of the delay between webhook retries.")
    ] = 60.0,
) -> None:
    """Run a local Telegram: the Bot API plus a control API to act as users."""
    import uvicorn

    from botter.sandbox import SandboxConfig, create_app

    config = SandboxConfig(
        rate_limits=rate_limits,
        pre_checkout_timeout_s=pre_checkout_timeout,
        webhook_retry_max_s=webhook_retry_max,
    )
    typer.echo(f"sandbox: Bot API and control API on http://{host}:{port}")
    # Long polls (getUpdates with a timeout) would hold a stop for up to their timeout;
    # Telegram drops them too when it restarts, so the sandbox does not wait for them.
    uvicorn.run(
        create_app(config), host=host, port=port, log_level="warning", access_log=False,
        timeout_graceful_shutdown=1,
    )  # fmt: skip


@app.command()
def migrate(as_json: JsonOption = False) -> None:
    """Bring the database schema up to date."""
    from botter.db.migrate import upgrade
    from botter.engines import resolve_engines

    try:
        engines = resolve_engines(load_settings())
    except (SettingsError, BotterError) as error:
        fail(str(error))
    try:
        upgrade(engines.settings.database_url or "")
    except Exception as error:
        fail_on_engine_error(error)
        raise
    finally:
        engines.stop_started()
    emit({"migrated": True}, as_json)


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port (default: PORT or 3000).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
) -> None:
    """Run the web service: webhooks, health, metrics."""
    from botter.local import serve_forever

    try:
        settings = load_settings()
    except SettingsError as error:
        fail(str(error))
    import uvloop

    # uvloop's event loop is markedly faster on the webhook path; behaviour is the same.
    uvloop.run(serve_forever(settings, host, port or settings.port))


@app.command()
def worker() -> None:
    """Run a worker: processes updates and jobs; one worker also runs the scheduler."""
    from botter.local import work_forever

    try:
        settings = load_settings()
    except SettingsError as error:
        fail(str(error))
    asyncio.run(work_forever(settings))


@app.command()
def run(
    port: Annotated[int | None, typer.Option(help="Port of the web service.")] = None,
    sandbox: Annotated[
        bool | None,
        typer.Option(
            "--sandbox/--no-sandbox",
            help="Run the Telegram sandbox (default: when no TELEGRAM_API_URL is configured).",
        ),
    ] = None,
    demo: Annotated[
        bool, typer.Option(help="Seed a demo creator, bot, channel and plan in the sandbox.")
    ] = True,
) -> None:
    """Everything in one process: embedded engines, sandbox, web service and worker."""
    from botter.local import run_all

    try:
        settings = load_settings()
    except SettingsError as error:
        fail(str(error))
    use_sandbox = (not settings.uses_sandbox) if sandbox is None else sandbox
    asyncio.run(run_all(settings, port or settings.port, use_sandbox, demo))


@bot_app.command("add")
def bot_add(
    token: Annotated[str, typer.Option(help="The token @BotFather gave you.")],
    as_json: JsonOption = False,
) -> None:
    """Connect a bot: sets its webhook (with PUBLIC_URL) or prepares polling."""
    from botter import admin
    from botter.telegram.client import bot_id_of

    try:
        bot_id_of(token)
    except ValueError as error:
        fail(str(error))  # never the token itself: it may be a real one, mistyped
    emit(with_runtime(lambda runtime: admin.add_bot(runtime, token)), as_json)


@chat_app.command("add")
def chat_add(
    bot: Annotated[int, typer.Option(help="The bot's id.")],
    chat_id: Annotated[int, typer.Option("--chat-id", help="The channel or group id.")],
    join_request: Annotated[
        bool, typer.Option(help="Admit by approving join requests instead of one-time links.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Put a chat under the paywall; the bot must be its admin with invite and ban rights."""
    from botter import admin

    join_by = "join_request" if join_request else "invite_link"
    emit(with_runtime(lambda runtime: admin.add_chat(runtime, bot, chat_id, join_by)), as_json)


@plan_app.command("add")
def plan_add(
    bot: Annotated[int, typer.Option(help="The bot's id.")],
    chat: Annotated[list[int], typer.Option(help="A chat id the plan grants (repeatable).")],
    title: Annotated[str, typer.Option(help="Shown on the button and the invoice.")],
    stars: Annotated[int, typer.Option(help="Price in Telegram Stars.")],
    period: Annotated[str, typer.Option(help="Access length, like 90s, 12h or 30d.")],
    remind: Annotated[
        str | None,
        typer.Option(
            help="Reminders before expiry, like 3d,1d [default: DEFAULT_REMINDER_OFFSETS]"
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sell access to one or more chats for a price and a period."""
    from botter import admin
    from botter.durations import DurationError, parse_duration_s

    try:
        period_s = parse_duration_s(period)
        offsets = (
            [parse_duration_s(part) for part in remind.split(",") if part.strip()]
            if remind is not None
            else None
        )
    except DurationError as error:
        fail(str(error))
    emit(
        with_runtime(
            lambda runtime: admin.add_plan(runtime, bot, chat, title, stars, period_s, offsets)
        ),
        as_json,
    )


@subscriptions_app.command("list")
def subscriptions_list(
    bot: Annotated[int, typer.Option(help="The bot's id.")], as_json: JsonOption = False
) -> None:
    """Every grant of the bot's chats, active or expired."""
    from botter import admin

    emit(with_runtime(lambda runtime: admin.list_subscriptions(runtime, bot)), as_json)


@payments_app.command("list")
def payments_list(
    bot: Annotated[int, typer.Option(help="The bot's id.")], as_json: JsonOption = False
) -> None:
    """The bot's payments, oldest first."""
    from botter import admin

    emit(with_runtime(lambda runtime: admin.list_payments(runtime, bot)), as_json)


@problems_app.command("list")
def problems_list(
    bot: Annotated[int, typer.Option(help="The bot's id.")], as_json: JsonOption = False
) -> None:
    """What went wrong that only the creator can fix (missing rights, a revoked token,
    payments that matched no order), newest first."""
    from botter import admin

    emit(with_runtime(lambda runtime: admin.list_problems(runtime, bot)), as_json)
