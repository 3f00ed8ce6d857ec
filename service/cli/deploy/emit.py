"""A small YAML writer for the generated files: mappings in the order given, block style,
strings quoted (as JSON, which YAML reads) unless plainly safe, multi-line strings as
literal blocks. pgcue's runtime needs no YAML library; tests read the output back with
one and compare."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

# Plain (unquoted) only what every YAML reader takes for a string: words, paths, flags
# (--type), host:port; never what YAML 1.1 resolves to something else (a number, a
# boolean, null, a date), which starts with a digit, a sign and a digit, or a dot.
_PLAIN = re.compile(r"^(?:[A-Za-z_/]|-(?=[A-Za-z-]))[A-Za-z0-9_./:@=+-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not text.endswith(":") and ": " not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _literal(text: str) -> bool:
    """Written as a literal block (|-): several lines, none that the block would change."""
    lines = text.split("\n")
    return (
        len(lines) > 1
        and bool(lines[0])
        and not lines[0][0].isspace()
        and all(line == line.rstrip() and "\t" not in line for line in lines)
    )


def _block(text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [(pad + line).rstrip() for line in text.split("\n")]


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            k = scalar(key)
            if isinstance(item, str) and _literal(item):
                out.append(f"{pad}{k}: |-")
                out += _block(item, indent + 2)
            elif isinstance(item, Mapping) and item:
                out.append(f"{pad}{k}:")
                out += _lines(item, indent + 2)
            elif isinstance(item, Sequence) and not isinstance(item, str) and item:
                out.append(f"{pad}{k}:")
                out += _lines(item, indent)
            else:
                out.append(f"{pad}{k}: {_inline(item)}")
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            if (isinstance(item, Mapping) and item) or (
                isinstance(item, Sequence) and not isinstance(item, str) and item
            ):
                inner = _lines(item, indent + 2)
                out.append(f"{pad}- {inner[0].lstrip()}")
                out += inner[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + _inline(value))
    return out


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[]"
    if isinstance(value, str) and "\n" in value:
        return json.dumps(value, ensure_ascii=False)
    return scalar(value)


def dump(value: Any) -> str:
    """One YAML document."""
    return "\n".join(_lines(value, 0)) + "\n"


def dump_all(documents: Sequence[Any], header: str = "") -> str:
    """Several documents, separated by ---, after a comment header."""
    head = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines()) if header else ""
    return head + "---\n".join(dump(d) for d in documents)
