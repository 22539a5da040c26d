"""The producer side: ``Client`` (pika, ``sync``) and ``AsyncClient`` (aio-pika, ``aio``),
the result handles they return (``handles``), the completion waiter behind ``get()``
(``waiter``) and the background writer of PENDING rows (``pending``).

Import the clients from :mod:`hutch`; nothing is imported here, so loading one
part does not load aio-pika for a program that never uses asyncio.
"""
