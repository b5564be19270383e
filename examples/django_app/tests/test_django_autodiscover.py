"""``app.autodiscover_tasks()`` finds the tasks of Django's installed apps lazily, as Celery.

Each case runs in a fresh interpreter: what it checks is which modules get imported when.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent

# The example's settings, without the integration's own discovery at start-up.
SETTINGS = "from shop.settings import *  # noqa\nPGQUEUE_AUTODISCOVER = False\n"
PRELUDE = """
import sys
from django.apps import apps
from pgqueue import App
app = App("proj", set_as_current=False)
"""


def run(tmp_path: Path, script: str, django: bool = True) -> subprocess.CompletedProcess[str]:
    (tmp_path / "lazy_settings.py").write_text(SETTINGS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if django:
        env["DJANGO_SETTINGS_MODULE"] = "lazy_settings"
    return subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
                          cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_packages_it_imports_every_installed_apps_tasks_when_finalized(
        tmp_path: Path) -> None:
    ok(run(tmp_path, """
        app.autodiscover_tasks()
        assert "orders.tasks" not in sys.modules and not apps.ready  # lazy: nothing yet
        app.finalize()                                               # a worker starting
        assert apps.ready and "orders.tasks" in sys.modules
        from pgqueue.contrib.django import get_app
        assert "orders.tasks.fulfil_order" in get_app().tasks
    """))


def test_force_imports_at_once(tmp_path: Path) -> None:
    ok(run(tmp_path, """
        app.autodiscover_tasks(force=True)
        assert "orders.tasks" in sys.modules
    """))


def test_on_an_app_already_finalized_it_imports_at_once(tmp_path: Path) -> None:
    ok(run(tmp_path, """
        app.finalize()
        app.autodiscover_tasks()
        assert "orders.tasks" in sys.modules
    """))


def test_related_name_picks_the_module_and_a_missing_one_is_skipped(tmp_path: Path) -> None:
    ok(run(tmp_path, """
        app.autodiscover_tasks(related_name="urls")
        app.autodiscover_tasks(related_name="no_such_module")
        app.finalize()
        assert "orders.urls" in sys.modules and "orders.no_such_module" not in sys.modules
    """))


def test_a_callable_is_called_only_when_the_app_is_finalized(tmp_path: Path) -> None:
    ok(run(tmp_path, """
        calls = []
        app.autodiscover_tasks(lambda: calls.append(1) or ["orders"])
        assert calls == [] and "orders.tasks" not in sys.modules
        import django; django.setup()
        app.finalize()
        assert calls == [1] and "orders.tasks" in sys.modules
    """))


def test_without_packages_and_without_django_it_is_refused_in_one_line(
        tmp_path: Path) -> None:
    ok(run(tmp_path, """
        from pgqueue.exceptions import ConfigurationError
        try:
            app.autodiscover_tasks()
        except ConfigurationError as error:
            assert "DJANGO_SETTINGS_MODULE is unset" in str(error), error
            assert "\\n" not in str(error)
        else:
            raise AssertionError("accepted")
    """, django=False))


@pytest.mark.parametrize("force", [True, False])
def test_a_package_that_does_not_exist_is_one_clear_error(tmp_path: Path, force: bool) -> None:
    ok(run(tmp_path, f"""
        from pgqueue.exceptions import ConfigurationError
        try:
            app.autodiscover_tasks(["orderz"], force={force})
            app.finalize()
        except ConfigurationError as error:
            assert "no package 'orderz'" in str(error), error
        else:
            raise AssertionError("accepted")
    """))


def test_a_broken_tasks_module_is_not_swallowed(tmp_path: Path) -> None:
    (tmp_path / "brokenpkg").mkdir()
    (tmp_path / "brokenpkg" / "__init__.py").write_text("")
    (tmp_path / "brokenpkg" / "tasks.py").write_text("import not_installed_anywhere\n")
    result = run(tmp_path, """
        app.autodiscover_tasks(["brokenpkg"])
        app.finalize()
    """)
    assert result.returncode == 1 and "not_installed_anywhere" in result.stderr
