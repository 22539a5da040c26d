"""The client's PENDING rows: written in the background in batches that linger for more
rows (issue #16), and a flush never waits for the linger."""

from __future__ import annotations

import uuid

import pytest

from apps.result_tasks import make_app
from support.waiting import eventually


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    yield app
    app.close()


def test_submits_within_the_linger_share_one_write_and_flush_does_not_wait(app, monkeypatch):
    client = app.client()
    writer = client.pending_writer
    writer.linger = 3600.0  # a flush must cut it short
    writes = []
    write = client.store.write
    monkeypatch.setattr(client.store, "write", lambda rows, **kw: (writes.append(len(rows)),
                                                                    write(rows, **kw))[1])
    handles = [app.tasks["tests.add"].delay(i, i) for i in range(3)]
    assert client.flush(timeout=30)
    assert writes == [3]
    rows = client.store.get_many([h.id for h in handles])
    assert {r.state for r in rows.values()} == {"PENDING"} and len(rows) == 3


def test_rows_are_written_without_a_flush(app):

    client = app.client()
    r = app.tasks["tests.add"].delay(1, 1)
    eventually(lambda: client.store.get(r.id) is not None, timeout=30)
    assert client.store.get(r.id).state == "PENDING"
