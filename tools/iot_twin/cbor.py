"""CBOR (RFC 8949) for the Fleet Provisioning ``.../cbor`` topics (§5.1), on ``cbor2``.

A thin wrapper so the twin (and tests comparing our client's codec with it) keep one
name for it: :func:`dumps`, :func:`loads` (strict: trailing bytes are an error, like
malformed input) and :class:`CborError`. The hand-written codec this replaces is gone;
``cbor2`` (pinned in requirements-dev.txt) is the well-kept library the host side uses.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2


class CborError(ValueError):
    """Malformed or unsupported CBOR."""


def dumps(value: Any) -> bytes:
    """Encode ``value`` as CBOR (definite lengths, preferred integer sizes)."""
    try:
        return cbor2.dumps(value)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as e:
        raise CborError(str(e)) from e


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode one CBOR item that fills ``data`` exactly."""
    raw = bytes(data)
    if not raw:
        raise CborError("empty input")
    stream = io.BytesIO(raw)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, TypeError, ValueError, RecursionError, EOFError) as e:
        raise CborError(str(e) or type(e).__name__) from e
    if stream.tell() != len(raw):
        raise CborError(f"{len(raw) - stream.tell()} trailing bytes")
    return value
