"""Settings from the environment: one clear line per bad value, and the local key file."""

import os
import stat
import threading
from pathlib import Path

import pytest

from botter.config import TELEGRAM_API_URL, Settings, SettingsError, load_settings

KEY_A = "a" * 40
KEY_B = "b" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the developer's shell or .env file leaks into these tests."""
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        for variable in list(os.environ):
            if variable.lower() == name:
                monkeypatch.delenv(variable)
    return tmp_path


def test_defaults() -> None:
    settings = load_settings()

    assert settings.database_url is None
    assert settings.redis_url is None
    assert settings.telegram_api_url == TELEGRAM_API_URL
    assert not settings.uses_sandbox
    assert settings.port == 3000
    assert settings.botter_secret_keys == ()
    assert settings.default_reminder_offsets == (3 * 86400, 86400)


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@127.0.0.1:5432/botter")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:8081")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("DEFAULT_REMINDER_OFFSETS", "7d, 1h")

    settings = load_settings()

    assert settings.database_url == "postgresql://u:p@127.0.0.1:5432/botter"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.uses_sandbox
    assert settings.port == 8080
    assert settings.default_reminder_offsets == (7 * 86400, 3600)


def test_a_dotenv_file_in_the_working_directory_is_read(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("PORT=4000\n")

    assert load_settings().port == 4000


def test_the_environment_wins_over_dotenv(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_environment / ".env").write_text("PORT=4000\n")
    monkeypatch.setenv("PORT", "5000")

    assert load_settings().port == 5000


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://u@h/db", "must be a postgresql:// URL"),
        ("DATABASE_URL", "127.0.0.1:5432", "must be a postgresql:// URL"),
        ("REDIS_URL", "http://127.0.0.1", "must be a redis:// URL"),
        ("TELEGRAM_API_URL", "api.telegram.org", "must be an http:// or https:// URL"),
        ("PORT", "abc", "valid integer"),
        ("PORT", "0", "greater than or equal to 1"),
        ("PORT", "65536", "less than or equal to 65535"),
        ("BOTTER_SECRET_KEYS", "short", "at least 32 characters"),
        ("BOTTER_SECRET_KEYS", f"{KEY_A},short", "at least 32 characters"),
        ("DEFAULT_REMINDER_OFFSETS", "3d,1x", "'1x' is not a duration"),
        ("DB_POOL_SIZE", "0", "greater than or equal to 1"),
        ("SWEEP_INTERVAL_S", "0", "greater than 0"),
    ],
)
def test_an_invalid_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    text = str(caught.value)
    assert text.startswith(f"invalid setting {variable}: ")
    assert message in text
    assert "\n" not in text
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_short_key_is_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "s3cr3t-but-too-short"
    monkeypatch.setenv("BOTTER_SECRET_KEYS", f"{KEY_A},{secret}")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert secret not in str(caught.value)
    assert KEY_A not in str(caught.value)


def test_several_errors_still_give_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://x")
    monkeypatch.setenv("PORT", "abc")

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert len(str(caught.value).splitlines()) == 1
    assert str(caught.value).startswith("invalid setting ")


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        (KEY_A, (KEY_A,)),
        (f"{KEY_A},{KEY_B}", (KEY_A, KEY_B)),
        (f" {KEY_A} , {KEY_B} ,", (KEY_A, KEY_B)),
        (f"{KEY_B},,{KEY_A}", (KEY_B, KEY_A)),
        ("", ()),
    ],
)
def test_keys_are_split_by_comma_newest_first(
    monkeypatch: pytest.MonkeyPatch, value: str, keys: tuple[str, ...]
) -> None:
    monkeypatch.setenv("BOTTER_SECRET_KEYS", value)

    assert load_settings().botter_secret_keys == keys


def test_overrides_are_validated_too() -> None:
    with pytest.raises(SettingsError, match=r"^invalid setting PORT: "):
        load_settings(port=0)
    assert load_settings(port=1234).port == 1234


@pytest.mark.parametrize(
    ("value", "sandbox"),
    [
        ("https://api.telegram.org", False),
        ("https://api.telegram.org/", False),
        ("http://127.0.0.1:8081", True),
        ("http://127.0.0.1:8081/", True),
    ],
)
def test_uses_sandbox(monkeypatch: pytest.MonkeyPatch, value: str, sandbox: bool) -> None:
    monkeypatch.setenv("TELEGRAM_API_URL", value)

    settings = load_settings()

    assert settings.uses_sandbox is sandbox
    assert not settings.telegram_api_url.endswith("/")


def test_configured_keys_are_used_and_no_file_is_written(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    monkeypatch.setenv("BOTTER_SECRET_KEYS", f"{KEY_A},{KEY_B}")
    monkeypatch.setenv("BOTTER_DATA_DIR", str(clean_environment / "data"))

    assert load_settings().keys_or_generated() == (KEY_A, KEY_B)
    assert not (clean_environment / "data").exists()


def test_a_key_is_generated_once_into_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    data_dir = clean_environment / "nested" / "data"
    monkeypatch.setenv("BOTTER_DATA_DIR", str(data_dir))

    (key,) = load_settings().keys_or_generated()

    key_file = data_dir / "secret.key"
    assert len(key) >= 32
    assert key_file.read_text().strip() == key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert os.listdir(data_dir) == ["secret.key"]  # no temporary file left behind
    # Reused by the next process, not replaced.
    assert load_settings().keys_or_generated() == (key,)
    assert key_file.read_text().strip() == key


def test_the_default_data_dir_is_relative_to_the_working_directory(
    clean_environment: Path,
) -> None:
    (key,) = load_settings().keys_or_generated()

    assert (clean_environment / ".botter" / "secret.key").read_text().strip() == key


def test_an_existing_key_file_is_reused(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / "secret.key").write_text(KEY_A + "\n")
    monkeypatch.setenv("BOTTER_DATA_DIR", str(clean_environment))

    assert load_settings().keys_or_generated() == (KEY_A,)


def test_an_empty_key_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / "secret.key").write_text("\n")
    monkeypatch.setenv("BOTTER_DATA_DIR", str(clean_environment))

    with pytest.raises(SettingsError, match="shorter than 32 characters"):
        load_settings().keys_or_generated()


def test_processes_starting_at_once_agree_on_one_key(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    monkeypatch.setenv("BOTTER_DATA_DIR", str(clean_environment / "data"))
    settings = [load_settings() for _ in range(16)]
    barrier = threading.Barrier(len(settings))
    keys: list[tuple[str, ...]] = []

    def start(one: Settings) -> None:
        barrier.wait()
        keys.append(one.keys_or_generated())

    threads = [threading.Thread(target=start, args=(one,)) for one in settings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(keys) == len(settings)
    assert len(set(keys)) == 1
    assert os.listdir(clean_environment / "data") == ["secret.key"]
