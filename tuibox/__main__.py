"""``tuibox``: no arguments opens the dashboard; anything else is the docker-like CLI."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if not argv or (len(argv) == 2 and argv[0] == "--root"):
        try:
            from .app import run_dashboard  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            from .cli import build_parser

            build_parser().print_help()
            print("\nThe dashboard is not part of this build yet; use the commands above.")
            return 0
        return int(run_dashboard(argv[1] if argv else None))
    from .cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
