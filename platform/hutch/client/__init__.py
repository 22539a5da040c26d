"""The producer side: ``Client`` (pika, ``sync``) and ``AsyncClient`` (aio-pika, ``aio``),
the result handles they return (``handles``), the completion waiter behind ``get()``
(``waiter``), the background writer of PENDING rows (``pending``) and revoking tasks
(``revocation``: stored, then broadcast; ``app.control`` in ops/ is built on it).

Import the clients from :mod:`hutch`; nothing is imported here, so loading one
part does not load aio-pika for a program that never uses asyncio.
"""
