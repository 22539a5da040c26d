"""The public surface is exactly __all__ (guarded like httpx's exported-members test)."""

import hutch


def test_all_names_are_exported_and_nothing_public_is_missing():
    public = {n for n in dir(hutch) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(hutch, n)).__name__ == "module"}
    assert set(hutch.__all__) - {"__version__"} == public - modules


def test_seed_api_shapes():
    app = hutch.Hutch("tasks", broker="memory://", backend="sqlite:///:memory:")

    @app.task
    def add(x, y):
        return x + y

    assert add.name == "test_public_api.add" or add.name.endswith(".add")
    assert add(2, 3) == 5
    sig = add.s(16)
    assert sig.clone((4,)).args == (4, 16)
    assert add.si(1, 2).clone((9,)).args == (1, 2)
    assert hutch.signature("tasks.add", (1, 2)).to_dict()["task"] == "tasks.add"
    assert isinstance(add.s(1) | add.s(2), hutch.chain)
    assert isinstance(hutch.group(add.s(1, 1)) | add.s(2), hutch.chord)
    assert issubclass(hutch.ChordError, hutch.HutchError)
    assert hutch.GroupResult.restore.__doc__


def test_crontab_is_exported_where_celery_users_look_for_it():
    from hutch.beat import crontab as beat_crontab
    from hutch.schedules import crontab as schedules_crontab

    assert hutch.crontab is beat_crontab is schedules_crontab
    assert hutch.crontab(hour=7, minute=30, day_of_week=1).to_string() == "30 7 * * 1"
