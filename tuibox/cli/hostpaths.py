"""Relative host paths on the command line are the caller's (docker CLI 23+).

``-v ./x:/y`` and ``--mount type=bind,source=./x`` name ``x`` in the working directory of
whoever typed them, so they are made absolute here, before the options leave this
process.  The engine (possibly the supervisor, whose working directory is ``/``) accepts
only absolute bind sources: nothing is ever resolved against its own directory.  Only a
source starting with ``.`` is a path: any other non-absolute ``-v`` source is a volume
name, and a ``--mount`` bind source like ``x`` is refused by the engine, as by Docker.
Stdlib only: the fast ``run`` path must not import pydantic.
"""

from __future__ import annotations

import os


def volume_spec(spec: str) -> str:
    """``-v SRC:DST[:MODE]`` with a ``.``-relative ``SRC`` made absolute."""
    source, sep, rest = spec.partition(":")
    if sep and source.startswith("."):
        return f"{os.path.abspath(source)}:{rest}"
    return spec


def mount_spec(spec: str) -> str:
    """``--mount …,source=SRC,…`` with a ``.``-relative ``SRC`` made absolute."""
    fields = spec.split(",")
    for i, item in enumerate(fields):
        key, sep, value = item.partition("=")
        if sep and key.strip().lower() in ("source", "src") and value.startswith("."):
            fields[i] = f"{key}={os.path.abspath(value)}"
    return ",".join(fields)
