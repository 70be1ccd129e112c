"""An input file's bytes (``_read_bytes``), their UTF-8 text (``_decode``), and the data columns
a table reader converts (``read_table``'s ``columns``: ``_kept_positions``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from tfbp_dask.errors import check_input_file

from .messages import _fail


def _read_bytes(path: Path, role: str, label: str, *, allow_empty: bool) -> bytes:
    check_input_file(path, role)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise _fail(label, f"cannot be read ({err.strerror or err})") from err
    if not allow_empty and not raw.strip():
        raise _fail(label, "is empty")
    return raw


def _decode(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "it looks like UTF-16; save it as UTF-8"
        elif raw.startswith(b"\x1f\x8b"):
            hint = "it looks gzip-compressed; decompress it first"
        elif raw.startswith(b"PAR1"):
            hint = "it looks like Parquet; name it *.parquet"
        else:
            hint = "save it as UTF-8"
        raise _fail(
            label,
            f"is not valid UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); {hint}",
        ) from err


def _kept_positions(names: Sequence[str], wanted: Collection[str] | None) -> list[int]:
    """Positions of the data columns converted (``read_table``'s ``columns``): the wanted ones
    if the names hold each, else all."""
    if wanted is not None and set(wanted) <= set(names[1:]):
        return [position for position, name in enumerate(names) if position and name in wanted]
    return list(range(1, len(names)))
