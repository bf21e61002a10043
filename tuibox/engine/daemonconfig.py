"""``<root>/daemon.json``: the per-root settings, with Docker's file name and key names.

One record for the whole file, read where a setting is needed (a create, a bridge, the
supervisor's start), e.g.::

    {"no-new-privileges": true, "userns": "auto", "supervisor-idle-timeout": 300,
     "default-address-pools": [{"base": "10.200.0.0/16", "size": 24}]}

Unknown keys are ignored (Docker's file may carry keys tuibox has no use for).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError

from .errors import InvalidArgument
from .models import Record

DAEMON_CONFIG = "daemon.json"
# Seconds a supervisor with no running container and no client waits before it leaves.
DEFAULT_IDLE_TIMEOUT = 60.0


class AddressPool(Record):
    base: str
    size: int


class EngineDefaults(Record):
    """``<root>/daemon.json``: what every container of this root gets unless told otherwise."""

    no_new_privileges: bool = Field(False, alias="no-new-privileges")
    userns: str = "host"  # "host" or "auto"
    userns_user: str = Field("containers", alias="userns-user")  # whose /etc/subuid ids
    seccomp_profile: str = Field("", alias="seccomp-profile")  # a JSON profile's path
    # Docker's key: where bridge networks take their subnets, e.g.
    # [{"base": "10.200.0.0/16", "size": 24}]; empty = tuibox's and Docker's defaults.
    default_address_pools: list[AddressPool] = Field(default_factory=list,
                                                     alias="default-address-pools")
    # tuibox's own: how long (s) an idle supervisor stays (no running or restarting
    # container, no client connected); 0 = it never leaves.  Read when it starts.
    supervisor_idle_timeout: float = Field(DEFAULT_IDLE_TIMEOUT, ge=0,
                                           alias="supervisor-idle-timeout")


def engine_defaults(root: Path) -> EngineDefaults:
    """The root's settings; a missing file means every default, a broken one is an error."""
    try:
        text = (root / DAEMON_CONFIG).read_text()
    except FileNotFoundError:
        return EngineDefaults.model_validate({})
    except OSError as exc:
        raise InvalidArgument(f"cannot read {root / DAEMON_CONFIG}: {exc.strerror}") from exc
    try:
        defaults = EngineDefaults.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidArgument(f"{root / DAEMON_CONFIG}: {first['msg']} "
                              f"({'.'.join(map(str, first['loc'])) or 'file'})") from None
    if defaults.userns not in ("host", "auto"):
        raise InvalidArgument(f"{root / DAEMON_CONFIG}: userns must be \"host\" or \"auto\"")
    return defaults
