"""Signal names as users write them: ``TERM``, ``SIGTERM``, ``15``, ``sigkill``."""

from __future__ import annotations

import signal

from .errors import InvalidArgument


def parse_signal(value: str | int) -> signal.Signals:
    text = str(value).strip().upper()
    try:
        if text.isdigit():
            return signal.Signals(int(text))
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise InvalidArgument(f"invalid signal: {value}") from None
