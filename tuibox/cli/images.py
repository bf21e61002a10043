"""Image verbs of the CLI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .format import ago, human_size, render_rows

if TYPE_CHECKING:
    from ..engine import Engine, ImageRecord


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def image_json(image: ImageRecord) -> dict[str, Any]:
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.repo_digests,
        "Created": image.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "Architecture": image.architecture,
        "Os": image.os,
        "Size": image.size,
        "Config": image.config.model_dump(),
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
    }


def cmd_images(engine: Engine, args: argparse.Namespace) -> int:
    rows: list[dict[str, str]] = []
    images, errors = engine.images.list_with_errors()
    for error in errors:  # the others are listed; `system check` says what can be done
        sys.stderr.write(f"tuibox: skipping a broken record: {error} (see `tuibox system "
                         f"check`)\n")
    for image in sorted(images, key=lambda i: i.created, reverse=True):
        short = image.id if args.no_trunc else image.id.removeprefix("sha256:")[:12]
        tags = image.repo_tags or ["<none>:<none>"]
        for ref in tags:
            repo, _, tag = ref.rpartition(":")
            if args.reference and args.reference not in (ref, repo):
                continue
            rows.append({"Repository": repo, "Tag": tag, "ID": short,
                         "CreatedSince": ago(image.created), "Size": human_size(image.size)})
    if args.quiet:
        for ident in dict.fromkeys(r["ID"] for r in rows):
            _out(ident)
        return 0
    text = render_rows(rows, args.format, ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                       ["Repository", "Tag", "ID", "CreatedSince", "Size"])
    if text:
        _out(text)
    return 0


def cmd_load(engine: Engine, args: argparse.Namespace) -> int:
    for ref in engine.images.load(Path(args.input)):
        if not args.quiet:
            kind = "Loaded image ID" if ref.startswith("sha256:") else "Loaded image"
            _out(f"{kind}: {ref}")
    return 0


def cmd_save(engine: Engine, args: argparse.Namespace) -> int:
    engine.images.save(args.images, Path(args.output), fmt=args.format)
    return 0


def cmd_import(engine: Engine, args: argparse.Namespace) -> int:
    image = engine.images.import_image(Path(args.source), ref=args.reference,
                                       changes=args.change)
    _out(image.id)
    return 0


def cmd_rmi(engine: Engine, args: argparse.Namespace) -> int:
    from ..engine.errors import TuiboxError

    code = 0
    for ref in args.images:
        try:
            for line in engine.images.remove(ref, force=args.force,
                                             containers_using=engine.containers_using):
                _out(line)
        except TuiboxError as exc:
            sys.stderr.write(f"tuibox: {exc}\n")
            code = 1
    return code


def cmd_tag(engine: Engine, args: argparse.Namespace) -> int:
    engine.images.tag(args.source, args.target)
    return 0
