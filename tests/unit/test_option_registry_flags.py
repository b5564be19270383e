"""The flags of `pgqueue worker` and `pgqueue beat` are the registry's
(WORKER_FLAGS and BEAT_FLAGS in pgqueue/celery_compat.py): every parameter of either
command has its entry with the same spellings, every entry its parameter; a refused flag
exits 2 with one line naming the alternative; an ignored one is logged once with its
reason and the command goes on. Each implemented or mapped flag names a test showing its
effect (checked for every table in test_option_registry.py)."""

from __future__ import annotations

import logging
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pgqueue import celery_compat
from pgqueue.celery_compat import IGNORED, REFUSED, Entry
from pgqueue.cli import main
from pgqueue.cli.flags import spellings

COMMANDS = {"worker": "WORKER_FLAGS", "beat": "BEAT_FLAGS"}


def table(command: str) -> dict[str, Entry]:
    flags: dict[str, Entry] = getattr(celery_compat, COMMANDS[command])
    return flags


def params(command: str) -> list[click.Parameter]:
    found = main.commands[command]
    return list(found.params)


def entry_line(param: click.Parameter) -> str:
    opts = [*param.opts, *param.secondary_opts]
    key = max(opts, key=len)
    aliases = "".join(f", {o!r}" for o in opts if o != key).replace("'", '"')
    value = "" if getattr(param, "is_flag", False) else ", value=True"
    return (f'"{key}": flag(done("what it does", "tests/...::test_showing_its_effect")'
            f'{aliases}{value})')


def registry_entry(command: str, param: click.Parameter) -> tuple[str, Entry]:
    """The entry of ``param``, or a failure saying exactly which entry to add, where."""
    given = {*param.opts, *param.secondary_opts}
    for name, entry in table(command).items():
        if given & {name, *entry.aliases}:
            return name, entry
    pytest.fail(f"pgqueue {command} accepts {'/'.join(sorted(given))}, which "
                f"{COMMANDS[command]} in pgqueue/celery_compat.py does not list: add "
                f"`{entry_line(param)},` to {COMMANDS[command]} (or ours(...) for a flag "
                "Celery doesn't have, mapped(...), ignored(...), refused(...)), then run "
                "`python scripts/option_table.py`")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_parameter_has_its_entry_with_its_spellings(command: str) -> None:
    seen: dict[str, str] = {}
    for param in params(command):
        assert isinstance(param, click.Option), f"{command}: argument {param.name} unregistered"
        name, entry = registry_entry(command, param)
        where = f"{COMMANDS[command]}[{name!r}] in pgqueue/celery_compat.py"
        assert name not in seen, (
            f"pgqueue {command} declares {name} twice ({seen[name]} and {param.opts}): the "
            f"registry says {entry.status}, so the command adds it itself; to honour it, "
            f"make {where} done(..., test=...) instead of {entry.status}(...)")
        seen[name] = "/".join(param.opts)
        assert sorted({*param.opts, *param.secondary_opts}) == sorted({name, *entry.aliases}), \
            f"{where}: spellings differ from the command's {param.opts}: give flag(...) " \
            f"exactly the command's spellings"
        assert entry.takes_value == (not param.is_flag), \
            f"{where}: value={not param.is_flag} (the command's option " \
            f"{'is a flag' if param.is_flag else 'takes a value'})"
        assert param.hidden == (entry.status in (REFUSED, IGNORED)), \
            f"{where}: {entry.status} flags are hidden from --help, others shown"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_entry_has_its_parameter(command: str) -> None:
    declared = {o for p in params(command) for o in (*p.opts, *p.secondary_opts)}
    for name, entry in table(command).items():
        assert {name, *entry.aliases} <= declared, (
            f"{COMMANDS[command]}[{name!r}] is {entry.status} but pgqueue {command} does "
            f"not accept {'/'.join(spellings(name, entry))}: declare the click option in "
            f"pgqueue/cli/{command}.py, or make the entry refused(...) or ignored(...)")


def cases(status: str) -> list[tuple[str, str, str]]:
    return [(command, name, spelling) for command in sorted(COMMANDS)
            for name, entry in sorted(table(command).items()) if entry.status == status
            for spelling in spellings(name, entry)]


def invoke(command: str, spelling: str, *more: str) -> Any:
    entry = next(e for n, e in table(command).items() if spelling in (n, *e.aliases))
    value = ["1"] if entry.takes_value else []
    return CliRunner().invoke(main, [command, "-A", "no_such_module_for_flags", *more,
                                     spelling, *value], catch_exceptions=False)


@pytest.mark.parametrize(("command", "name", "spelling"), cases(REFUSED))
def test_a_refused_flag_exits_2_naming_the_alternative(command: str, name: str,
                                                       spelling: str) -> None:
    result = invoke(command, spelling)
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        f"Error: {name} is not supported: {table(command)[name].how}"]


@pytest.mark.parametrize(("command", "name", "spelling"), cases(IGNORED))
def test_an_ignored_flag_is_logged_once_with_its_reason(
        command: str, name: str, spelling: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", "postgresql://postgres@127.0.0.1:1/postgres")
    entry = table(command)[name]
    first = spellings(name, entry)[0]
    with caplog.at_level(logging.WARNING):
        result = invoke(command, spelling, spelling, *(["1"] if entry.takes_value else []))
    # the command went on, to the missing app module: the flag did not stop it
    assert result.exit_code == 1 and "no_such_module_for_flags" in result.output
    warned = [r.getMessage() for r in caplog.records if "(ignored)" in r.getMessage()]
    assert warned == [f"{first}: {entry.how} (ignored)"]
