"""hutch web: the dashboard and its HTTP endpoints (docs/dashboard.md), one job a module.

- ``app``: the Starlette application (``create_app``): routes, middleware, templates.
- ``server``: the process: uvicorn on the asyncio loop, signals, systemd notify.
- ``security``: the bind rule (loopback may run open; any other address needs auth).
- ``auth``: who asks (HTTP basic users, bearer tokens) and the read/admin roles.
- ``csrf``: state-changing requests from browsers carry the page's token.
- ``passwords``, ``tokens``: argon2 hashes of ``web_users``; ``hutch_web_tokens``.
- ``headers``: the security headers every answer carries.
- ``health``: ``/healthz`` (the process is up) and ``/readyz`` (database and broker answer).
- ``pages``: the server-rendered pages (``templates/``, ``static/``: shipped in the wheel).
- ``api``: the JSON API under ``/api`` (``/api/v1``, Flower's endpoints, OpenAPI).

Importing this package imports nothing from Starlette, uvicorn or Jinja2 (the optional
``web`` extra: ``pip install 'hutch[web]'``); its modules do.
"""
