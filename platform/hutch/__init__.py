"""hutch: an AMQP-first task platform. RabbitMQ does every broker duty; SQL tables keep every result."""

__version__ = "0.1.0"
