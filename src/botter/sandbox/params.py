"""Bot API parameters as clients send them: JSON bodies, form fields, query strings.

Form fields and query strings carry only text, so nested values (reply_markup, prices,
allowed_updates) arrive as JSON text and booleans as "true"/"True"/"1". JSON bodies
carry real types. Every getter accepts both.
"""

import email.parser
import email.policy
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from botter.sandbox.errors import bad_request

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def decode_body(content_type: str, body: bytes) -> dict[str, Any]:
    """Decode a request body into raw parameter values; raise a Bot API error if unreadable."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}
    if media_type == "application/json":
        try:
            decoded = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise bad_request("can't parse JSON object") from None
        if not isinstance(decoded, dict):
            raise bad_request("JSON object expected")
        return decoded
    if media_type == "multipart/form-data":
        return _decode_multipart(content_type, body)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def _decode_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise bad_request("can't parse multipart form")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            fields[name] = payload.decode(errors="replace")
    return fields


class Params:
    """Typed, validated access to one call's parameters."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)

    def has(self, name: str) -> bool:
        return self.raw.get(name) not in (None, "")

    def _required(self, name: str) -> Any:
        if not self.has(name):
            raise bad_request(f'parameter "{name}" is required')
        return self.raw[name]

    def string(self, name: str) -> str:
        value = self._required(name)
        if isinstance(value, dict | list | bool):
            raise bad_request(f'parameter "{name}" must be a string')
        return str(value)

    def opt_string(self, name: str) -> str | None:
        return self.string(name) if self.has(name) else None

    def integer(self, name: str) -> int:
        value = self._required(name)
        if isinstance(value, bool):
            raise bad_request(f'parameter "{name}" must be an integer')
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).strip())
        except ValueError:
            raise bad_request(f'parameter "{name}" must be an integer') from None

    def opt_integer(self, name: str) -> int | None:
        return self.integer(name) if self.has(name) else None

    def boolean(self, name: str, default: bool = False) -> bool:
        if name not in self.raw or self.raw[name] is None:
            return default
        value = self.raw[name]
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise bad_request(f'parameter "{name}" must be a boolean')

    def json(self, name: str) -> Any:
        value = self._required(name)
        if isinstance(value, str):
            try:
                return orjson.loads(value)
            except orjson.JSONDecodeError:
                raise bad_request(f'can\'t parse parameter "{name}" as JSON') from None
        return value

    def opt_json(self, name: str) -> Any:
        return self.json(name) if self.has(name) else None

    def chat_id(self, name: str = "chat_id") -> int | str:
        """A chat id as Telegram takes it: an integer or an "@username"."""
        value = self._required(name)
        if isinstance(value, str) and value.startswith("@"):
            return value
        return self.integer(name)
