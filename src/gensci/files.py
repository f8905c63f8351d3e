"""Checks every reader and writer shares: the input is a non-empty file, text is UTF-8, JSON is
the object that was written, and an output's name ends in the suffix of the format written.

Each check raises a gensci error whose message names the file and the problem, so that a bad
file stops a command with one line (`error: ...`, exit code 2), never a traceback. Readers catch
EOFError too (NumPy, pyhmmer and gzip raise it for a file that ends early): escaping a command,
click would report it as an interrupt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gensci.errors import DataError, FormatError, GensciError


def check_input_file(
    path: str | Path,
    what: str = "file",
    missing: type[GensciError] = FormatError,
    empty: type[GensciError] = DataError,
) -> Path:
    """Return `path` as a Path; raise `missing` if it does not exist or is not a regular file,
    `empty` if it holds 0 bytes."""
    p = Path(path)
    if not p.exists():
        raise missing(f"{what} {p} does not exist")
    if p.is_dir():
        raise missing(f"{what} {p} is a folder, not a file")
    if not p.is_file():
        raise missing(f"{what} {p} is not a regular file")
    if p.stat().st_size == 0:
        raise empty(f"{what} {p} is empty (0 bytes)")
    return p


def decode_utf8(
    data: bytes, path: str | Path, what: str = "file", error: type[GensciError] = FormatError
) -> str:
    """Return `data` decoded as UTF-8 (a leading byte-order mark dropped); raise `error` naming
    the line and the byte where it is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{what} {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} on line {line} "
            "(re-save it as UTF-8)"
        ) from None


def read_text(
    path: str | Path,
    what: str = "file",
    missing: type[GensciError] = FormatError,
    empty: type[GensciError] = DataError,
    malformed: type[GensciError] = FormatError,
) -> str:
    """Return the UTF-8 text of a file, refusing a missing, empty, blank or non-UTF-8 one."""
    p = check_input_file(path, what, missing, empty)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise missing(f"cannot read {what} {p}: {exc}") from None
    text = decode_utf8(data, p, what, malformed)
    if not text.strip():
        raise empty(f"{what} {p} is empty (only blank lines)")
    return text


def parse_json_object(
    text: str | bytes, where: str, error: type[GensciError] = FormatError
) -> dict[str, Any]:
    """Return the JSON object in `text`; raise `error` naming `where` if it is not valid JSON or
    not an object (a list, a string, a number)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise error(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise error(f"{where} holds a JSON {_json_kind(value)}, expected a JSON object {{...}}")
    return value


def _json_kind(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def require_keys(
    mapping: dict[str, Any], keys: Sequence[str], where: str, error: type[GensciError]
) -> None:
    """Raise `error` naming `where` and the keys of `keys` that `mapping` lacks."""
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise error(f"{where} lacks {missing} (it holds {sorted(mapping)})")


def file_suffix(path: str | Path) -> str:
    """Return the lower-case suffix of a file name, with '.nii.gz' (and '.x.gz') kept whole."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if len(suffixes) >= 2 and suffixes[-1] == ".gz":
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


def check_suffix(path: str | Path, allowed: Sequence[str], what: str) -> Path:
    """Return `path` as a Path; raise FormatError (before any work is done) unless its name ends
    in one of `allowed`, the suffixes of the format written to it."""
    p = Path(path)
    name = p.name.lower()
    if not any(name.endswith(s) and len(name) > len(s) for s in allowed):
        expected = " or ".join(allowed)
        raise FormatError(
            f"{p} has the wrong suffix: {what} is written as {expected}; "
            f"choose a name ending in {allowed[0]}"
        )
    return p
