"""The ``hutch`` command: ``main`` (the click group, submit, result, control, dlq,
worker, bench), ``db`` and ``beat`` (their groups), ``demo``, and ``loader``
(``-A module[:attribute]``)."""
