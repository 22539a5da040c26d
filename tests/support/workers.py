"""Run a worker inside the test process (threads/asyncio/solo pools) and stop it after:
hutch.testing's, which the ``hutch_worker`` fixture uses too."""

from hutch.testing import running_worker

__all__ = ["running_worker"]
