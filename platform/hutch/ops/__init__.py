"""Operator tools the CLI (and the dashboard) share: revocation and the control
broadcast (``control``), dead-letter queue operations (``deadletters``) and the
workflow tree of a result (``tree``)."""
