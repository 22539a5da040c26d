"""RabbitMQ through pika (publisher, worker consumer, events) and aio-pika (asyncio).

``params`` turns a broker URL into connection parameters, ``topology`` names and
declares exchanges and queues in one place, and ``broker.AmqpBroker`` composes
the publisher, consumer and events subscriber behind :class:`hutch.brokers.base.Broker`.
docs/topology.md draws what gets declared.
"""
