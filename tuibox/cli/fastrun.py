"""``tuibox run``/``create`` without importing the engine: the supervisor creates.

The ordinary path imports pydantic and the image store (~200 ms of a ~260 ms ``run``);
the supervisor already has them loaded.  Here the CLI only parses flags and speaks the
socket protocol.  A missing image (which needs a pull) falls back to the ordinary path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.paths import StatePaths, default_root
from ..engine.supervisor.client import SupervisorClient, check

FALL_BACK = None


def try_fast(args: argparse.Namespace) -> int | None:
    """Run or create through the supervisor; None when the ordinary path must do it."""
    from .attach import early_raw, terminal_size
    from .containers import run_options_dict

    if args.pull == "always":
        return FALL_BACK
    options = run_options_dict(args)
    client = SupervisorClient(StatePaths(Path(args.root) if args.root else default_root()))
    start = args.verb == "run"
    attach = start and not args.detach
    stdin = bool(options["interactive"])
    request: dict[str, object] = {"op": "create", "options": options, "start": start,
                                  "attach": attach, "stdin": attach and stdin}
    size = terminal_size() if attach and options["tty"] else None
    if size:
        request.update(rows=size[0], cols=size[1])
    with early_raw(attach and stdin and bool(options["tty"])):
        return _run(args, client, request, start=start, attach=attach, stdin=stdin,
                    tty=bool(options["tty"]))


def _run(args: argparse.Namespace, client: SupervisorClient, request: dict[str, object], *,
         start: bool, attach: bool, stdin: bool, tty: bool) -> int | None:
    from .attach import follow, parse_detach_keys

    conn = client.connect()  # may start the supervisor: the slow part, raw already
    try:
        conn.send(request)
        created = conn.reply(raise_errors=False)
        if created.get("missing_image") and args.pull == "missing":
            return FALL_BACK
        if str(created.get("error", "")).startswith("unknown request"):
            return FALL_BACK  # a supervisor from an older tuibox still runs
        check(created)
        cid = str(created["id"])
        if not start:
            print(cid)
            return 0
        conn.reply()  # the start
        if not attach:
            print(cid)
            return 0
    except BaseException:
        conn.close()
        raise

    def kill(sig: str) -> None:
        client.request({"op": "kill", "id": cid, "signal": sig})

    def wait() -> int:
        return int(client.request({"op": "wait", "id": cid})["exit_code"])

    if args.attach:
        from ..engine.supervisor import protocol
        from . import attach as attach_module

        attach_module.SHOWN = {kind for name, kind in protocol.STREAM_KINDS.items()
                               if name in args.attach}
    return follow(conn, stdin=stdin, tty=tty,
                  detach_keys=parse_detach_keys(args.detach_keys), kill=kill, wait=wait)
