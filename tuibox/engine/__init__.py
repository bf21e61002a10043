"""tuibox's engine: images, containers, the supervisor.  Never imports the UI.

Names are loaded on first use (PEP 562) so the CLI and the supervisor's keeper pay only
for what they touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Engine
    from .errors import (
        Conflict,
        ContainerNotFound,
        ImageError,
        ImageNotFound,
        InvalidArgument,
        NotFound,
        RecordError,
        SetupError,
        SupervisorError,
        TuiboxError,
        UnsafeLayer,
    )
    from .models import Container, ContainerConfig, ContainerState, ImageRecord, RunOptions

__all__ = [
    "Conflict",
    "Container",
    "ContainerConfig",
    "ContainerNotFound",
    "ContainerState",
    "Engine",
    "ImageError",
    "ImageNotFound",
    "ImageRecord",
    "InvalidArgument",
    "NotFound",
    "RecordError",
    "RunOptions",
    "SetupError",
    "SupervisorError",
    "TuiboxError",
    "UnsafeLayer",
]

_WHERE = {"Engine": ".engine", "Container": ".models", "ContainerConfig": ".models",
          "ContainerState": ".models", "ImageRecord": ".models", "RunOptions": ".models"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_WHERE.get(name, ".errors"), __name__)
    return getattr(module, name)
