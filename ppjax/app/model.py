"""The model behind the page, made ready on a thread of its own while the page is already served.

The first start fetches the model (the official Places365 checkpoint is about 100 MB) and converts
it once; without internet that fails. Either way the page must open and say what is going on: how
far the download is, or what to do instead (the import command). :class:`ModelLoader` runs the
fetch-and-load on a thread and keeps its state for ``GET /api/status``.
"""

from __future__ import annotations

import threading
from typing import Callable

__all__ = ["ModelLoader"]


class ModelLoader:
    """Makes the page's protection ready: ``make(report)`` fetches what is missing and returns the
    protection (see :func:`fetch_then_load`), calling ``report(state, **fields)`` as it goes. The
    state is one of ``loading``, ``downloading`` (with ``file``, ``done`` and ``total`` bytes),
    ``converting``, ``ready`` and ``failed`` (with a ``message`` saying what to do)."""

    def __init__(self, model: str, make: Callable[[Callable], object]):
        self.model = model
        self._make = make
        self._lock = threading.Lock()
        self._status: dict = {"state": "loading", "message": f"loading {model}"}
        self.protection = None
        self.ready = threading.Event()

    def start(self) -> "ModelLoader":
        threading.Thread(target=self._run, name="ppjax-app-model", daemon=True).start()
        return self

    def report(self, state: str, **fields) -> None:
        with self._lock:
            self._status = {"state": state, **fields}

    def status(self) -> dict:
        with self._lock:
            return {"model": self.model, **self._status}

    def _run(self) -> None:
        try:
            self.protection = self._make(self.report)
        except Exception as e:  # noqa: BLE001 - whatever it was, the page says it
            self.report("failed", message=str(e) or type(e).__name__)
            return
        self.report("ready", message=f"{self.model} is ready")
        self.ready.set()


def fetch_then_load(model: str, build: Callable[[], object], *, root=None, urls=None) -> Callable[[Callable], object]:
    """The ``make`` of a :class:`ModelLoader`: fetch ``model`` into the store at ``root`` (from
    ``urls``, a mirror, when given) if it is not installed, then ``build()`` the protection."""

    def make(report: Callable) -> object:
        from ppjax import store

        if model in store.KNOWN_MODELS and not store.is_installed(model, root):

            def progress(filename: str):
                def update(done: int, total: int | None) -> None:
                    if total is not None and done >= total:
                        report("converting", message=f"converting {model} (once)")
                    else:
                        report("downloading", file=filename, done=done, total=total, message=f"downloading {filename}")

                return update

            report("downloading", message=f"fetching {model} (once)")
            try:
                store.fetch(model, urls=urls, root=root, progress=progress)
            except Exception as e:  # noqa: BLE001 - a failed download or a file that does not convert: the page says it
                hint = "" if "ppjax models import" in str(e) else f" Install it from a copy of its files: ppjax models import {model} PATH."
                raise RuntimeError(f"{model} could not be fetched and installed: {str(e).rstrip('.')}.{hint} Then start ppjax app again.") from None
        report("loading", message=f"loading {model}")
        return build()

    return make
