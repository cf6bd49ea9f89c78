"""SIGINT/SIGTERM as a request to stop cleanly, for the long-running commands."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def on_stop_signals(callback: Callable[[str], None]) -> Callable[[], None]:
    """Call ``callback(signal name)`` on SIGINT/SIGTERM; returns what removes the handlers.

    Where the event loop cannot take signal handlers (Windows, or a loop outside the main
    thread) nothing is installed and Ctrl-C raises KeyboardInterrupt as usual.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, callback, sig.name)
        except (NotImplementedError, RuntimeError):
            continue
        installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove
