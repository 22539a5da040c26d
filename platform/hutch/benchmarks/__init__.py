"""``hutch bench``: throughput and latency of hutch against raw pika on the same broker."""
