"""pika compatibility: float header values travel as AMQP doubles (field type ``d``).

hutch headers carry floats (``time_limit``) and RabbitMQ and aio-pika (pamqp) handle
doubles, but pika 1.x cannot encode them (it tears down the whole connection when it
meets one) and decodes them truncated to integers. The patch replaces two functions
of ``pika.data`` for every pika user in the process, so it is applied only when hutch
is about to talk to RabbitMQ through pika (the broker, publisher and consumer
constructors call :func:`allow_float_headers`), never by importing hutch.
"""

from __future__ import annotations

import struct
import threading
from typing import Any

import pika.data

_lock = threading.Lock()


def float_headers_allowed() -> bool:
    """Whether pika in this process already carries floats (hutch's patch is in place)."""
    return bool(getattr(pika.data.encode_value, "hutch_floats", False))


def allow_float_headers() -> None:
    """Patch ``pika.data`` once; later calls (any thread) change nothing. Other value
    types are left to pika."""
    with _lock:
        if float_headers_allowed():
            return
        encode, decode = pika.data.encode_value, pika.data.decode_value

        def encode_value(pieces: list[bytes], value: Any) -> int:
            if isinstance(value, float):
                pieces.append(struct.pack(">cd", b"d", value))
                return 9
            size: int = encode(pieces, value)
            return size

        def decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
            kind = encoded[offset:offset + 1]
            if kind == b"d":
                return struct.unpack_from(">d", encoded, offset + 1)[0], offset + 9
            if kind == b"f":
                return struct.unpack_from(">f", encoded, offset + 1)[0], offset + 5
            decoded: tuple[Any, int] = decode(encoded, offset)
            return decoded

        encode_value.hutch_floats = True  # type: ignore[attr-defined]
        pika.data.encode_value = encode_value
        pika.data.decode_value = decode_value
