"""Operator tools the CLI (and the dashboard) share: ``app.control`` (``control``,
built on the client's revocation), dead-letter queue operations (``deadletters``)
and the workflow tree of a result (``tree``)."""
