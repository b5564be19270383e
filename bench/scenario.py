"""Run one scenario of one system, in that system's interpreter; print the result as JSON.

``python -m bench.scenario SYSTEM SCENARIO '{"jobs": 1000, ...}' [--setup]``

The orchestrator (``python -m bench``) starts this with the right virtualenv and reads the
last line, which starts with ``BENCH-RESULT``.
"""

from __future__ import annotations

import json
import sys
import traceback

from . import systems
from .systems.base import SCENARIOS

RESULT_PREFIX = "BENCH-RESULT "


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    name, scenario, params = argv[0], argv[1], json.loads(argv[2])
    adapter = systems.load(name)()
    try:
        if "--setup" in argv[3:]:
            adapter.setup()
        if scenario == "setup":
            result: dict[str, object] = {}
        elif scenario in SCENARIOS:
            result = SCENARIOS[scenario](adapter, **params)
        else:
            from . import scale

            result = scale.SCENARIOS[scenario](adapter, **params)
    except Exception as error:
        traceback.print_exc()
        result = {"error": f"{type(error).__name__}: {error}"}
    finally:
        adapter.close()
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
