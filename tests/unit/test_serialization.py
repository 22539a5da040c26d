import datetime as dt
import uuid
from decimal import Decimal

import pytest

from hutch import serialization
from hutch.errors import ContentDisallowed, SerializationError

VALUE = {
    "when": dt.datetime(2026, 12, 1, 7, 30, tzinfo=dt.timezone.utc),
    "day": dt.date(2026, 12, 1),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "money": Decimal("12.50"),
    "raw": b"\x00\xff",
    "pair": (1, "a"),
    "tags": {1, 2},
    "frozen": frozenset({"x"}),
    "nested": [{"t": (1, (2, 3))}],
    "text": "héllo",
    "none": None,
    "flag": True,
    "num": 1.5,
}


@pytest.mark.parametrize("name", ["json", "msgpack", "yaml", "pickle"])
def test_every_serializer_round_trips_rich_values(name):
    body, content_type, encoding = serialization.dumps(VALUE, name)
    assert serialization.loads(body, content_type, encoding) == VALUE


@pytest.mark.parametrize("name", ["json", "msgpack", "yaml"])
def test_range_is_sent_as_a_list(name):
    body, ctype, enc = serialization.dumps({"r": range(4)}, name)
    assert serialization.loads(body, ctype, enc) == {"r": [0, 1, 2, 3]}


@pytest.mark.parametrize("compression", ["zlib", "gzip", "bzip2", "lzma"])
def test_compressions_round_trip_and_shrink(compression):
    value = {"data": "x" * 10_000}
    body, ctype, enc = serialization.dumps(value, "json", compression)
    assert enc == compression and len(body) < 1000
    assert serialization.loads(body, ctype, enc) == value


def test_refused_content_names_the_serializer():
    body, ctype, enc = serialization.dumps([1], "pickle")
    with pytest.raises(ContentDisallowed, match="pickle"):
        serialization.loads(body, ctype, enc, accept=("json", "msgpack", "yaml"))


def test_unserializable_value_is_a_clear_error():
    with pytest.raises(SerializationError, match="object"):
        serialization.dumps(object(), "json")


def test_non_string_keys_are_refused():
    with pytest.raises(SerializationError, match="keys must be strings"):
        serialization.dumps({1: "a"}, "json")


def test_yaml_loading_is_safe():
    evil = b"!!python/object/apply:os.system ['true']"
    with pytest.raises(SerializationError):
        serialization.loads(evil, "application/x-yaml", "utf-8")


def test_unknown_content_type():
    with pytest.raises(SerializationError, match="unknown content type"):
        serialization.loads(b"{}", "text/x-nope", None)
