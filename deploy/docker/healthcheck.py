"""The image's HEALTHCHECK: is the botter process in this container answering?

`botter serve` is asked `GET /health` on $PORT (liveness only: it touches no dependency,
so a database outage does not get healthy containers restarted). `botter worker` has no
web port; its metrics server on $WORKER_METRICS_PORT answers instead. `botter migrate`
is a one-shot command with nothing to ask. The process is read from PID 1's command line
unless a mode (serve, worker, migrate) is given as the first argument.

Exit status 0 means healthy, 1 unhealthy, as Docker expects. Standard library only: the
slim base image has no curl or wget.
"""

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 2.0
MODES = ("serve", "worker", "migrate")


def running_mode() -> str:
    if len(sys.argv) > 1:
        return sys.argv[1]
    try:
        arguments = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "serve"
    for argument in arguments:
        if argument in MODES:
            return argument
    return "serve"


def target(mode: str) -> str | None:
    host = os.environ.get("HEALTHCHECK_HOST", "127.0.0.1")
    if mode == "worker":
        port = os.environ.get("WORKER_METRICS_PORT", "3001")
        return None if port == "0" else f"http://{host}:{port}/metrics"
    if mode == "migrate":
        return None
    return f"http://{host}:{os.environ.get('PORT', '3000')}/health"


def main() -> int:
    mode = running_mode()
    if mode not in MODES:
        print(f"healthcheck: unknown mode {mode!r}; use one of {', '.join(MODES)}")
        return 1
    url = target(mode)
    if url is None:
        print(f"healthcheck: nothing to check for {mode}")
        return 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:  # noqa: S310
            status = answer.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        print(f"healthcheck: {url}: {error}")
        return 1
    print(f"healthcheck: {url}: {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
