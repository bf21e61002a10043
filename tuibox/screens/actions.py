"""What each dashboard key asks of the engine; runs in a worker thread (no widgets here)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tuibox.engine import Engine

VERBS = {"start": "started", "stop": "stopped", "restart": "restarted", "kill": "killed",
         "remove": "removed", "freeze": "froze/thawed", "update": "updated limits of",
         "run": "started"}


def perform(engine: Engine, action: str, refs: tuple[str, ...],
            kwargs: dict[str, Any]) -> list[str]:
    """Do ``action`` on each ref; returns one error text per failure (never raises)."""
    if action == "run":
        return _run(engine, kwargs["request"])

    def one(ref: str) -> str | None:
        try:
            if action == "freeze":
                if engine.get(ref).state.status == "paused":
                    engine.unpause(ref)  # type: ignore[attr-defined]
                else:
                    engine.pause(ref)  # type: ignore[attr-defined]
            elif action == "update":
                engine.update(ref, **kwargs)  # type: ignore[attr-defined]
            else:
                getattr(engine, action)(ref, **kwargs)
        except Exception as exc:  # every engine error becomes a notification
            return f"{ref[:12]}: {exc}"
        return None

    if len(refs) < 2:
        outcomes = [one(ref) for ref in refs]
    else:  # a multi-selection is acted on at once: stopping ten takes one timeout
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(refs), 32)) as pool:
            outcomes = list(pool.map(one, refs))
    return [error for error in outcomes if error is not None]


def _run(engine: Engine, request: Any) -> list[str]:
    try:
        config = engine.run(request.options)
    except Exception as exc:
        return [str(exc)]
    limits = request.limits
    wanted = {k: v for k, v in (("memory", limits.memory), ("cpus", limits.cpus),
                                ("pids_limit", limits.pids_limit)) if v is not None}
    if wanted:
        if not hasattr(engine, "update"):
            return [f"{config.name} runs, but limits are not available in this engine yet"]
        try:
            engine.update(config.id, **wanted)
        except Exception as exc:
            return [f"{config.name} runs, but its limits were not set: {exc}"]
    return []


def exec_command(engine: Engine, cid: str) -> list[str] | None:
    """The CLI command that opens a shell in the container, if the CLI has ``exec``."""
    try:
        from tuibox.cli import build_parser

        parser = build_parser()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        if not sub.choices or "exec" not in sub.choices:
            return None
    except Exception:
        return None
    return [sys.executable, "-m", "tuibox", "--root", str(engine.paths.root), "exec", "-it",
            cid, "/bin/sh"]
