"""`botter run` (what `make run` starts): a person can follow what it prints and buy access."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port


def read_until(process: subprocess.Popen[str], marker: str, timeout_s: float = 60) -> str:
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never printed; got:\n{''.join(seen)}")


def test_run_starts_everything_and_the_printed_steps_buy_access(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "TELEGRAM_API_URL", "PUBLIC_URL"}
    }
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "botter", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = read_until(process, "Ctrl-C stops")
        sandbox = re.search(r"sandbox is on (http://127\.0\.0\.1:\d+)", printed)
        bot = re.search(r"demo bot \(id (\d+)\)", printed)
        user = re.search(r"user (\d+), with", printed)
        plan = re.search(r'"callback_data": "(plan:\d+)"', printed)
        assert sandbox, printed
        assert bot, printed
        assert user, printed
        assert plan, printed
        assert httpx.get(f"http://127.0.0.1:{port}/ready").json()["status"] == "ok"

        users = f"{sandbox[1]}/sandbox/users/{user[1]}"
        bot_id = int(bot[1])

        def messages() -> list[dict[str, object]]:
            found: list[dict[str, object]] = httpx.get(
                f"{users}/messages", params={"bot_id": bot_id}
            ).json()
            return found

        def wait_for(count: int) -> list[dict[str, object]]:
            deadline = time.monotonic() + 15
            while len(messages()) < count:
                assert time.monotonic() < deadline, messages()
                time.sleep(0.1)
            return messages()

        httpx.post(f"{users}/send", json={"bot_id": bot_id, "text": "/start"})
        menu = wait_for(1)[0]
        press = {"bot_id": bot_id, "message_id": menu["message_id"], "callback_data": plan[1]}
        httpx.post(f"{users}/press", json=press)
        invoice = wait_for(2)[1]
        assert "invoice" in invoice
        paid = httpx.post(
            f"{users}/pay", json={"bot_id": bot_id, "message_id": invoice["message_id"]}
        ).json()
        assert paid["status"] == "paid"
        access = wait_for(4)[-1]
        link = re.search(r"https://t\.me/\+\S+", str(access["text"]))
        assert link, access
        joined = httpx.post(f"{users}/join", json={"invite_link": link[0]}).json()
        assert joined == {"status": "member"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert not (tmp_path / ".botter" / "postgres" / "pgdata" / "postmaster.pid").exists()
