"""bench.ingest end to end, briefly: three servers measured, ratios printed, nothing lost.

Performance is not asserted here: the machine is shared and noisy. docs/performance.md
holds measured numbers.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

SERVERS = ("bare", "aiogram", "botter")


@pytest.mark.timeout(400)
def test_short_run_measures_all_three_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.ingest", "--seconds", "3", "--warmup", "1",
            "--connections", "64", "--json", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=360,
    )  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stdout + done.stderr

    for server in SERVERS:
        assert re.search(rf"^1\s+{server}\s+\d+\s", done.stdout, re.MULTILINE), server
    assert re.search(r"^ratio botter/aiogram: \d+\.\d\dx", done.stdout, re.MULTILINE)
    assert re.search(r"^ratio botter/bare: \d+\.\d\dx", done.stdout, re.MULTILINE)
    assert "durable=True (fsync=on, synchronous_commit=on" in done.stdout
    assert re.search(r"lost 0, duplicated 0,", done.stdout)

    results = json.loads(out.read_text())
    assert set(results["summary"]) == set(SERVERS)
    assert all(results["summary"][server]["rps"] > 0 for server in SERVERS)
    assert set(results["ratios"]) == {"botter/aiogram", "botter/bare"}
    inbox = results["inbox"]
    assert inbox["answered_200"] > 0
    assert inbox["lost"] == 0
    assert inbox["duplicated_rows"] == 0
    assert inbox["answered_twice"] == 0
