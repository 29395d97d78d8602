"""Log lines: fixed event names with their context as fields, JSON for collectors, and no
bot token in any of it."""

import json
import logging
import re
from collections.abc import Iterator

import pytest
from structlog.contextvars import bound_contextvars

from botter.logs import configure_logging
from botter.web.app import request_id

TOKEN = "7000000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


@pytest.fixture
def json_lines() -> Iterator[None]:
    """JSON logging to the test's captured stderr; the root logger restored afterwards.
    Configured inside the test's own phase, where capsys has replaced sys.stderr."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def read(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_an_event_line_becomes_fields(
    json_lines: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("botter.jobs").info("job.done job_id=%s kind=%s", 12, "send_message")
    [line] = read(capsys)
    assert line["event"] == "job.done"
    assert line["job_id"] == "12"
    assert line["kind"] == "send_message"
    assert line["level"] == "info"
    assert line["logger"] == "botter.jobs"
    assert str(line["timestamp"]).endswith("Z")


def test_a_value_with_spaces_keeps_them(
    json_lines: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("botter.telegram").warning(
        "telegram.call_failed method=%s description=%s",
        "sendMessage",
        "Bad Request: chat not found",
    )
    [line] = read(capsys)
    assert line["description"] == "Bad Request: chat not found"


def test_other_libraries_lines_pass_through(
    json_lines: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("some.library").warning("Started server process [%d]", 1)
    [line] = read(capsys)
    assert line["event"] == "Started server process [1]"


def test_p9_a_token_never_reaches_the_output(
    json_lines: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    url = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    logging.getLogger("httpx").warning('HTTP Request: POST %s "HTTP/1.1 502"', url)
    logging.getLogger("some.library").error("request to %s failed", url)
    try:
        raise RuntimeError(f"could not reach {url}")
    except RuntimeError:
        logging.getLogger("botter.worker").exception("polling.crashed bot_id=%s", 7000000001)
    output = capsys.readouterr().err
    secret = TOKEN.split(":")[1]
    assert secret not in output
    assert output.count("/bot7000000001:***/sendMessage") == 3


def test_ids_bound_for_an_update_or_job_reach_every_line(
    json_lines: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    with bound_contextvars(job_id=31, job_kind="send_message"):
        logging.getLogger("botter.telegram").warning("telegram.call_failed method=sendMessage")
    logging.getLogger("botter.telegram").warning("telegram.call_failed method=getMe")
    inside, outside = read(capsys)
    assert (inside["job_id"], inside["job_kind"]) == (31, "send_message")
    assert "job_id" not in outside


def test_a_request_id_comes_from_the_proxy_when_sane() -> None:
    def scope(value: bytes) -> dict[str, object]:
        return {"headers": [(b"x-request-id", value)]}

    assert request_id(scope(b"nginx-4f2a9c")) == "nginx-4f2a9c"
    made = request_id(scope(b"bad id\nwith a newline"))
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    assert request_id({"headers": []}) != request_id({"headers": []})
