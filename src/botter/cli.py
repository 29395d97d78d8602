"""The `botter` command line."""

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
