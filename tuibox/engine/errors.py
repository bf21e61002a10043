"""Every error the engine raises.

The tree::

    TuiboxError                     anything the engine refuses or fails to do
    ├── InvalidArgument             bad flag value or request (docker exit 125)
    ├── NotFound
    │   ├── ImageNotFound           no such image in the local store
    │   └── ContainerNotFound       no such container (or an ambiguous prefix)
    ├── Conflict                    name in use, image in use, container running …
    ├── ImageError                  a broken image or archive
    │   └── UnsafeLayer             a layer tar entry that would write outside the layer
    ├── SetupError                  a container failed to start; names the step
    ├── SupervisorError             the supervisor could not be reached or started
    ├── NoSpace                     the disk or a quota is full (also an OSError: ENOSPC/EDQUOT)
    ├── RegistryError               a registry refused, failed or could not be reached
    │   └── RegistryAuthError       missing or wrong credentials, or a token was refused
    └── RecordError                 a state record on disk cannot be read

Each error carries the docker-compatible process exit code the CLI should use.
"""

from __future__ import annotations


class TuiboxError(Exception):
    """Base class of everything the engine raises."""

    exit_code: int = 125

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(TuiboxError):
    """A flag or request value the engine cannot accept."""


class NotFound(TuiboxError):
    """Something the user named does not exist."""


class ImageNotFound(NotFound):
    """No image of that name or id is in the local store."""


class ContainerNotFound(NotFound):
    """No container of that name or id (or the id prefix is ambiguous)."""


class Conflict(TuiboxError):
    """The request clashes with the current state (name in use, container running …)."""


class ImageError(TuiboxError):
    """An image, archive or layer is broken or unsupported."""


class UnsafeLayer(ImageError):
    """A layer entry would escape its layer directory; nothing outside was written."""

    def __init__(self, entry: str, reason: str) -> None:
        super().__init__(f"refusing layer entry {entry!r}: {reason}")
        self.entry = entry
        self.reason = reason


class SetupError(TuiboxError):
    """A container could not be started; ``stage`` names the step that failed."""

    def __init__(self, stage: str, detail: str, *, errno: int = 0, exit_code: int = 125) -> None:
        super().__init__(f"container setup failed at {stage}: {detail}")
        self.stage = stage
        self.detail = detail
        self.errno = errno
        self.exit_code = exit_code


class SupervisorError(TuiboxError):
    """The supervisor could not be reached, started or understood."""


class NoSpace(TuiboxError, OSError):
    """A write failed because the filesystem (or a quota) is full; says where and what to do.

    Also an ``OSError`` with the original errno, so code that handles a failed write as an
    ``OSError`` keeps doing so; the CLI and the dashboard show the one-line message."""

    def __init__(self, path: str, *, errno: int = 28) -> None:
        what = "disk quota exceeded" if errno == 122 else "no space left on device"  # EDQUOT
        TuiboxError.__init__(self, f"{what}: {path} (free some space: tuibox system prune / "
                                   f"rm)")
        self.errno = errno
        self.strerror = what
        self.filename = path


class RegistryError(TuiboxError):
    """A registry request failed: unreachable, unknown repository/tag, bad answer."""


class RegistryAuthError(RegistryError):
    """The registry (or its token server) refused our credentials or anonymous access."""


class RecordError(TuiboxError):
    """A record on disk is missing, corrupt or from an unknown schema."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"cannot read {path}: {detail}")
        self.path = path
        self.detail = detail
