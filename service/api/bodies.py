"""Request bodies: decoded against the route's body type, so every refusal names its field.

Litestar decodes a JSON body without its type and converts the result afterwards. The
untyped pass reports a value it cannot hold (a number past a float's range, 1e400) at
`$[...]`, which no longer says which field it was in; and the conversion raises a plain
ValueError for some values (msgspec: an epoch-seconds runAt past year 9999), which escaped
as a 500. Decoded against the type in one pass, an error carries its path (`$.priority`,
`$.payload[...]`), and a plain ValueError is traced to the field that raised it.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException, ValidationException

from pgcue.api.problems import bad_request

_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")


class ApiRequest(Request[Any, Any, Any]):
    """The app's request class (Litestar `request_class`): a route whose body is a msgspec
    Struct gets it decoded by decode_body."""

    async def json(self) -> Any:
        data = self.route_handler.parsed_data_field
        target = data.annotation if data is not None else None
        if not (isinstance(target, type) and issubclass(target, msgspec.Struct)):
            return await super().json()
        return decode_body(await self.body() or b"null", target)


def decode_body(body: bytes, target: type[msgspec.Struct]) -> Any:
    """`body` as a `target`; a ValidationException naming the field at fault, a bad-json
    problem for bytes that are no JSON text, or SerializationException (Litestar's 400)
    for malformed JSON."""
    try:
        return _decode(body, target)
    except msgspec.ValidationError as exc:  # JSON, but a value that does not fit its field
        message, _, where = str(exc).partition(" - at `")
        raise _invalid(message, _field_at(where.rstrip("`"), message)) from exc
    except (ValueError, OverflowError) as exc:  # a conversion that failed without saying where
        try:
            raw = _decode(body, Any)  # the body's own faults further on, if it has any, come first
        except msgspec.ValidationError:
            raw = None  # a number out of range too: the field of the first fault stays unknown
        raise _invalid(str(exc), _field_raising(raw, target)) from exc


def _decode(body: bytes, target: Any) -> Any:
    """msgspec's decode, with bytes that are no JSON text as the API's problems."""
    try:
        return msgspec.json.decode(body, type=target, strict=False)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise SerializationException(str(exc)) from exc
    except UnicodeDecodeError:  # invalid UTF-8 inside a string
        raise bad_request(
            "bad-json", "Body is not valid JSON", "the request body is not valid UTF-8; send one JSON object"
        ) from None
    except RecursionError:
        raise bad_request(
            "bad-json", "Body is not valid JSON", "the request body is nested too deeply; send one JSON object"
        ) from None


def _field_at(path: str, message: str) -> str | None:
    """The API's name for the field at msgspec's error path: `$.runAt` -> runAt; inside a
    free-form object only its own field is known (`$.payload[...]` -> payload); at `$` the
    field a message names (a missing or unknown one), else None (the body as a whole)."""
    field = path.removeprefix("$").removeprefix(".").split("[...]", 1)[0]
    if field:
        return field
    named = _NAMED.search(message)
    return named.group(1) if named else None


def _field_raising(raw: Any, target: type[msgspec.Struct]) -> str | None:
    """The top-level field of the decoded body `raw` whose value alone fails to convert."""
    if isinstance(raw, dict):
        for f in msgspec.structs.fields(target):
            if f.encode_name in raw:
                try:
                    msgspec.convert(raw[f.encode_name], f.type, strict=False)
                except (ValueError, OverflowError):
                    return f.encode_name
    return None


def _invalid(message: str, field: str | None) -> ValidationException:
    error = {"message": message, "key": field, "source": "body"} if field else {"message": message, "source": "body"}
    return ValidationException(detail=message, extra=[error])
