"""Broker implementations behind one interface: RabbitMQ (``amqp://``) and ``memory://``."""
