"""A Ray worker that dies once, right after its first batch is written and recorded (for the tests:
Ray restarts it and retries the batch)."""

from __future__ import annotations

import os
from pathlib import Path

from ppjax.protect.ray_backend import _Worker


class DiesOnce(_Worker):
    def __call__(self, batch):
        out = super().__call__(batch)
        marker = Path(str(batch["output"][0])).parent / "died-once"
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL)  # the first worker to get here, once
        except FileExistsError:
            return out
        os.close(fd)
        os._exit(1)  # as a crash or OOM kill would: no cleanup, the batch's result never returned
