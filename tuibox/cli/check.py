"""``tuibox system check [--repair]``, and how a container whose record cannot be read
shows in ``ps``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .format import ago

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.broken import BrokenContainer

CHECK_HELP = ("report every record that cannot be read and every index entry that points "
              "nowhere; --repair rebuilds what can be rebuilt from what is on disk and "
              "deletes what nothing owns")


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repair", action="store_true",
                   help="rebuild the tag and names indexes, lost image, state and volume "
                        "records; delete orphans")


def broken_row(b: BrokenContainer, *, no_trunc: bool) -> dict[str, str]:
    """A ``ps`` row for a container one of whose records cannot be read: dead."""
    command = b.command if no_trunc or len(b.command) <= 20 else b.command[:19] + "…"
    return {
        "ID": b.id if no_trunc else b.short_id, "Image": b.image or "?",
        "Command": f'"{command}"',
        "CreatedAt": b.created.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"),
        "RunningFor": ago(b.created), "Status": "Dead (broken record)", "State": "dead",
        "Ports": "", "Names": b.name, "Labels": "", "Networks": "", "Error": b.error,
    }


def report_broken(broken: list[BrokenContainer]) -> None:
    for b in broken:
        sys.stderr.write(f"tuibox: container {b.short_id} has a broken record: {b.error} "
                         f"(`tuibox rm -f {b.short_id}` removes it)\n")


def cmd_check(engine: Engine, args: argparse.Namespace) -> int:
    """One line per problem; exit 1 while any is left (0: none, or all repaired)."""
    from ..engine.check import check

    problems = check(engine, repair=args.repair)
    for p in problems:
        verb = "repaired" if p.repaired else "fix"
        sys.stdout.write(f"{p.kind} {p.item}: {p.detail}\n  {verb}: {p.fix}\n")
    left = sum(not p.repaired for p in problems)
    if not problems:
        sys.stdout.write(f"{engine.paths.root}: no problems found\n")
    else:
        sys.stdout.write(f"{len(problems)} problem(s), {len(problems) - left} repaired, "
                         f"{left} left\n")
    return 1 if left else 0
