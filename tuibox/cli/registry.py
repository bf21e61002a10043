"""Registry verbs of the CLI: ``pull``, ``push``, ``login``, ``logout`` and ``run --pull``."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.images.registry.progress import ProgressCallback
    from . import Handler


def _printer(out: TextIO) -> ProgressCallback:
    # Imported here: building the parser must not pull in the image store.
    from .progress import ProgressPrinter

    return ProgressPrinter(out)


def add_insecure_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="allow this registry without verified TLS (loopback always is)")


def cmd_pull(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.images.reference import parse_reference
    from ..engine.images.registry.pull import pull

    ref = parse_reference(args.name)
    progress = None if args.quiet else _printer(sys.stdout)
    pull(engine.images, args.name, platform=args.platform, progress=progress,
         insecure=args.insecure_registry)
    sys.stdout.write(f"{ref}\n")
    return 0


def cmd_push(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.images.registry.push import push

    progress = None if args.quiet else _printer(sys.stdout)
    digest = push(engine.images, args.name, progress=progress,
                  insecure=args.insecure_registry)
    if args.quiet:
        sys.stdout.write(f"{digest}\n")
    return 0


def _password(args: argparse.Namespace) -> str:
    from ..engine.errors import InvalidArgument

    if args.password_stdin:
        if args.password:
            raise InvalidArgument("--password and --password-stdin are mutually exclusive")
        if not args.username:
            raise InvalidArgument("must provide --username with --password-stdin")
        return sys.stdin.read().rstrip("\r\n")
    if args.password:
        sys.stderr.write("WARNING! Using --password via the CLI is insecure. "
                         "Use --password-stdin.\n")
        return str(args.password)
    return getpass.getpass("Password: ")


def cmd_login(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.errors import InvalidArgument
    from ..engine.images.registry.credentials import Credentials
    from ..engine.images.registry.login import login

    username = args.username
    if not username:
        if args.password_stdin or not sys.stdin.isatty():
            raise InvalidArgument("a username is required (-u) when not on a terminal")
        username = input("Username: ").strip()
    password = _password(args)
    if not username or not password:
        raise InvalidArgument("username and password are required")
    login(engine.paths, args.server, Credentials(username, password),
          insecure=args.insecure_registry)
    sys.stdout.write("Login Succeeded\n")
    return 0


def cmd_logout(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.images.reference import DEFAULT_DOMAIN
    from ..engine.images.registry.login import logout

    server = args.server or DEFAULT_DOMAIN
    if logout(engine.paths, server):
        sys.stdout.write(f"Removing login credentials for {server}\n")
    else:
        sys.stdout.write(f"Not logged in to {server}\n")
    return 0


def with_pull(handler: Handler) -> Handler:
    """``run``/``create`` with ``--pull``: get the image first, showing progress on stderr."""

    def run(engine: Engine, args: argparse.Namespace) -> int:
        from ..engine.errors import ImageNotFound
        from ..engine.images.registry.policy import ensure_image

        policy = args.pull
        if policy == "never":
            engine.images.resolve(args.image)
        elif policy == "always":
            ensure_image(engine.images, args.image, policy="always",
                         progress=_printer(sys.stderr), platform=args.platform)
        else:
            try:
                engine.images.resolve(args.image)
            except ImageNotFound:
                sys.stderr.write(f"Unable to find image '{args.image}' locally\n")
                ensure_image(engine.images, args.image, policy="missing",
                             progress=_printer(sys.stderr), platform=args.platform)
        return handler(engine, args)

    return run


def add_verbs(verb: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the registry verbs with ``build_parser``'s ``verb`` helper."""
    p = verb("pull", cmd_pull, "download an image from a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    p.add_argument("--platform", help="os/arch[/variant] to pull (default: this host)")
    add_insecure_flag(p)
    p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    p = verb("push", cmd_push, "upload an image to a registry")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress verbose output")
    add_insecure_flag(p)
    p.add_argument("name", metavar="NAME[:TAG]")
    p = verb("login", cmd_login, "log in to a registry")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true", help="take the password from stdin")
    add_insecure_flag(p)
    p.add_argument("server", nargs="?", metavar="SERVER")
    p = verb("logout", cmd_logout, "log out from a registry")
    p.add_argument("server", nargs="?", metavar="SERVER")


def add_run_pull_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pull", choices=["missing", "always", "never"], default="missing",
                   help="pull the image before running (default: missing)")
    p.add_argument("--platform", help="os/arch[/variant] to pull if pulling")
