"""`python -m ppjax.bench.child ARGS...`: ``ppjax ARGS`` that also writes its peak resident memory.

The benchmarks start each run as a new process, as a person would; this records the process's
own peak (VmHWM, which starts afresh at exec) to the JSON file ``PPJAX_PEAK_RSS_FILE`` names.
"""

from __future__ import annotations

import atexit
import json
import os
import sys

from ppjax.bench.robustness import _peak_rss_kb


def _record() -> None:
    path = os.environ.get("PPJAX_PEAK_RSS_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"peak_rss_gb": _peak_rss_kb() / 1024**2}, f)


if __name__ == "__main__":
    atexit.register(_record)
    from ppjax.cli import main

    sys.argv = ["ppjax", *sys.argv[1:]]
    main()
