"""Container logs in Docker's json-file format.

``LogWriter`` (used by the supervisor) moves a container's stdout/stderr from its pipes into
``<container_dir>/<id>-json.log`` with rotation, losing or repeating no byte even if the
supervisor is SIGKILLed at any instant.  ``read_logs`` is ``docker logs``: tail, since/until,
follow across rotations.  The format helpers reproduce moby's bytes exactly.
"""

from __future__ import annotations

from .entry import LogEntry, decode_line
from .jsonfmt import encode_entry, format_time
from .reader import read_logs
from .since import parse_since
from .writer import LogWriter, Stream

__all__ = [
    "LogEntry",
    "LogWriter",
    "Stream",
    "decode_line",
    "encode_entry",
    "format_time",
    "parse_since",
    "read_logs",
]
