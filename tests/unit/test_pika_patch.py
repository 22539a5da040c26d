"""hutch's patches of its AMQP libraries (pika: float headers as AMQP doubles;
aio-pika: string expirations as they are) are applied by the broker and publisher
constructors, once, and never by importing hutch. Each check runs in a fresh
interpreter so that no earlier test has patched them already."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_hutch_leaves_pika_and_aio_pika_alone():
    assert _run("""
        import aio_pika.message, pika.data
        original = pika.data.encode_value, pika.data.decode_value
        import hutch, hutch.cli.main, hutch.brokers.factory, hutch.client.aio
        import hutch.brokers.amqp.broker, hutch.brokers.amqp.publisher
        import hutch.brokers.amqp.consumer, hutch.brokers.amqp.subscriber, hutch.brokers.amqp.aio
        print((pika.data.encode_value, pika.data.decode_value) == original)
        print(str in aio_pika.message.encode_expiration.registry)
    """).splitlines() == ["True", "False"]


def test_the_broker_constructor_patches_pika_once():
    assert _run("""
        import pika.data
        from hutch.brokers.amqp.broker import AmqpBroker
        from hutch.config import Settings
        AmqpBroker("amqp://guest:guest@127.0.0.1:5672//", Settings())
        patched = pika.data.encode_value, pika.data.decode_value
        AmqpBroker("amqp://guest:guest@127.0.0.1:5672//", Settings())
        print(patched == (pika.data.encode_value, pika.data.decode_value))
        pieces = []
        pika.data.encode_table(pieces, {"time_limit": 1.5})
        print(pika.data.decode_table(b"".join(pieces), 0)[0])
    """).splitlines() == ["True", "{'time_limit': 1.5}"]


def test_the_async_publisher_constructor_lets_string_expirations_through():
    assert _run("""
        import aio_pika.message
        from hutch.brokers.amqp.aio import AsyncAmqpPublisher
        from hutch.config import Settings
        AsyncAmqpPublisher("amqp://guest:guest@127.0.0.1:5672//", Settings())
        AsyncAmqpPublisher("amqp://guest:guest@127.0.0.1:5672//", Settings())
        print(aio_pika.message.encode_expiration("1500"))
    """) == "1500"
