"""The reconnect delays of the worker's long-lived connections (hutch.brokers.amqp.backoff)."""

from hutch.brokers.amqp.backoff import RECONNECT_FIRST, RECONNECT_MAX, Backoff


def test_delays_double_from_the_first_up_to_the_cap_with_jitter_below_nominal():
    backoff = Backoff()
    nominal = [min(RECONNECT_MAX, RECONNECT_FIRST * 2 ** i) for i in range(12)]
    delays = [backoff.next_delay() for _ in nominal]
    assert all(n / 2 <= d <= n for d, n in zip(delays, nominal, strict=True))
    assert max(delays) <= RECONNECT_MAX == 1.0
    assert backoff.failures == 12


def test_reset_starts_the_next_outage_from_the_first_delay():
    backoff = Backoff()
    for _ in range(50):  # a long outage
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= RECONNECT_FIRST
