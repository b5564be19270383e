"""A suggestion for an unknown setting names a near name, never merely a similar-looking one."""

from __future__ import annotations

import pytest

from pgqueue import App, ConfigurationError

PG_URL = "postgresql://u:p@db.example:5432/app"


@pytest.mark.parametrize(("typo", "meant"), [
    ("task_track_startd", "task_track_started"),
    ("worker_concurency", "worker_concurrency"),
    ("result_expire", "result_expires"),
    ("brokr_url", "broker_url"),
    ("task_acks_lat", "task_acks_late"),  # a Celery name pgqueue ignores, not task_track_started
])
def test_a_typo_gets_the_setting_it_meant(typo: str, meant: str) -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    with pytest.raises(ConfigurationError) as error:
        app.conf.update({typo: 1})
    assert f"did you mean {meant!r}?" in str(error.value)


@pytest.mark.parametrize("name", [
    "taskacks",
    "worker_prefetch",   # was "did you mean 'worker_pool'?"
    "x",
    "",
    "task_" * 40,
])
def test_a_name_near_no_setting_gets_no_suggestion(name: str) -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    with pytest.raises(ConfigurationError) as error:
        app.conf.update({name: 1})
    message = str(error.value)
    assert message.startswith("unknown setting") and "did you mean" not in message


def test_attribute_access_suggests_only_near_names() -> None:
    app = App("proj", dsn=PG_URL, set_as_current=False)
    with pytest.raises(AttributeError, match="did you mean 'task_time_limit'"):
        app.conf.task_time_limt  # noqa: B018
    with pytest.raises(AttributeError) as error:
        app.conf.task_acks_lat  # noqa: B018
    assert "did you mean" not in str(error.value)
