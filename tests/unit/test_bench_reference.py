"""bench.reference: pgbench runs pgqueue's enqueue statement with the parameters
``delay()`` sends, as pgbench variables (prepared: sent as parameters), not as literals
a prepared statement would fold once."""

from __future__ import annotations

import re

from bench import reference
from pgqueue import App
from pgqueue.client.producer import build_rows


def test_the_enqueue_script_sends_delay_s_values_as_parameters() -> None:
    app = App("bench-reference", dsn="postgresql://u@127.0.0.1:5432/bench",
              schema="bench_ref_pgq")
    script = reference.pgqueue_enqueue_script(app)
    params = build_rows(app, "noop", None, [((), {})], {"ignore_result": True},
                        pairs=True).single_params()
    sent = {name for name, value in params.items() if value is not None} - {"id"}
    assert set(script.variables) == sent | {"jobs_channel"}
    assert script.variables["args"] == "[]" and script.variables["ignore_result"] == "true"
    assert set(re.findall(r":(\w+)::", script.text)) | {"jobs_channel"} == set(script.variables)
    assert "%(" not in script.text and "'" not in script.text.replace("'queued'", "").replace(
        "'scheduled'", "")  # no value rendered as a literal
    assert "gen_random_uuid()" in script.text and script.text.endswith(";\n")
    argv = reference._pgbench_argv(reference.Path("s.sql"), 16, 5, True, script.variables)
    assert argv[argv.index("-D") + 1] == "queue=default"
