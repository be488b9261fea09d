"""Ctrl-C during a sweep: a KeyboardInterrupt only where it cannot break Optuna's bookkeeping."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["InterruptGate"]


class InterruptGate:
    """Ctrl-C arrives as KeyboardInterrupt only inside the fine-tune; elsewhere it is deferred.

    A KeyboardInterrupt in the middle of Optuna's bookkeeping (creating a trial in `ask`, writing
    its result in `tell`) could leave a trial RUNNING forever. So while a Session runs, SIGINT
    only sets `pending` outside `opened()` blocks; the objective raises KeyboardInterrupt at its
    next safe point (before the fine-tune) and the session stops after the trial being recorded.
    """

    def __init__(self) -> None:
        self.pending = False
        self._open = False
        self._previous: Any = None

    def install(self) -> None:
        """Take over SIGINT (main thread only; elsewhere Python's default stays)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def uninstall(self) -> None:
        """Give SIGINT back to whoever had it."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self._open:
            self._open = False  # one interrupt is enough: the cleanup must not be cut short
            raise KeyboardInterrupt
        self.pending = True

    @contextlib.contextmanager
    def opened(self) -> Iterator[None]:
        """Inside: Ctrl-C raises KeyboardInterrupt (also one that came just before)."""
        if self.pending:
            raise KeyboardInterrupt
        self._open = True
        try:
            yield
        finally:
            self._open = False

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        """Inside an `opened()` block: defer Ctrl-C (storage writes), raise it at the end."""
        was_open, self._open = self._open, False
        try:
            yield
        finally:
            self._open = was_open
        if was_open and self.pending:
            raise KeyboardInterrupt
