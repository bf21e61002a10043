"""The security flags of ``create``/``run`` resolved into one ``SecurityConfig``.

Docker's rules and error texts: ``--privileged``, ``--cap-add``/``--cap-drop`` (with
``ALL``), ``--device``, ``--device-cgroup-rule``, ``--security-opt`` and ``--userns``.
Checked once at create, so a start never fails on a flag.  The per-root defaults come
from ``<root>/daemon.json`` (Docker's file name and key names), e.g.::

    {"no-new-privileges": true, "userns": "auto"}
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING

# daemon.json used to be read here: these names stay importable from this module.
from .daemonconfig import DAEMON_CONFIG as DAEMON_CONFIG
from .daemonconfig import AddressPool as AddressPool
from .daemonconfig import EngineDefaults as EngineDefaults
from .daemonconfig import engine_defaults as engine_defaults
from .errors import InvalidArgument
from .idranges import parse_userns
from .models import ContainerConfig, DeviceMapping, RunOptions, SecurityConfig
from .runtime.capabilities import ALL_CAPS, DEFAULT_CAPS, mask_of
from .runtime.seccomp_profile import ProfileError
from .runtime.seccomp_profile import parse as parse_profile

if TYPE_CHECKING:
    from .runtime.seccomp import Program

_RULE = re.compile(r"^([abc]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


def normalize_cap(name: str) -> str:
    cap = name.strip().upper()
    if cap == "ALL":
        return cap
    if not cap.startswith("CAP_"):
        cap = "CAP_" + cap
    if cap not in ALL_CAPS:
        raise InvalidArgument(f'invalid capability: unknown capability: "{cap}"')
    return cap


def cap_mask(sec: SecurityConfig) -> int:
    """The container's capabilities: moby's ``TweakCapabilities`` over the default 14."""
    if sec.privileged:
        return mask_of(list(ALL_CAPS))
    if "ALL" in sec.cap_add:
        return mask_of([c for c in ALL_CAPS if c not in sec.cap_drop])
    if "ALL" in sec.cap_drop:
        return mask_of([c for c in sec.cap_add if c != "ALL"])
    kept = [c for c in DEFAULT_CAPS if c not in sec.cap_drop]
    return mask_of(kept + sec.cap_add)


def parse_device(spec: str) -> list[DeviceMapping]:
    """``--device HOST[:CONTAINER][:rwm]``; a directory adds every device node under it."""
    parts = spec.split(":")
    permissions = "rwm"
    if len(parts) == 3:
        src, dst, permissions = parts
    elif len(parts) == 2:
        src, dst = parts
        if _valid_mode(dst):
            permissions, dst = dst, src
    elif len(parts) == 1:
        src = dst = parts[0]
    else:
        raise InvalidArgument(f"invalid device specification: {spec}")
    if not _valid_mode(permissions):
        raise InvalidArgument(f"invalid device mode: {permissions}")
    if not src.startswith("/"):
        raise InvalidArgument(f"invalid device path: {src}: the path must be absolute")
    if not dst.startswith("/"):
        raise InvalidArgument(f"{dst} is not an absolute path")
    try:
        st = os.stat(src)
    except OSError as exc:
        raise InvalidArgument(f'error gathering device information while adding custom '
                              f'device "{src}": {exc.strerror.lower() if exc.strerror else exc}'
                              ) from None
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return [DeviceMapping(path_on_host=src, path_in_container=dst, permissions=permissions)]
    if not stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f'error gathering device information while adding custom '
                              f'device "{src}": not a device node')
    found = []
    for dirpath, _dirs, files in os.walk(src):
        for name in sorted(files):
            host = os.path.join(dirpath, name)
            mode = os.lstat(host).st_mode
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                inside = os.path.join(dst, os.path.relpath(host, src))
                found.append(DeviceMapping(path_on_host=host, path_in_container=inside,
                                           permissions=permissions))
    return found


def _valid_mode(mode: str) -> bool:
    return 0 < len(mode) <= 3 and all(ch in "rwm" for ch in mode) and \
        len(set(mode)) == len(mode)


def parse_cgroup_rule(rule: str) -> str:
    """``--device-cgroup-rule 'c 1:3 rwm'`` (Docker's syntax, checked as Docker does)."""
    text = " ".join(rule.split())
    if not _RULE.match(text):
        raise InvalidArgument(f"invalid device cgroup format '{rule}'")
    return text


def security_for(opts: RunOptions, root: Path) -> SecurityConfig:
    """Everything security-related in ``opts``, checked, with the root's defaults."""
    defaults = engine_defaults(root)
    sec = SecurityConfig(privileged=opts.privileged, no_new_privs=defaults.no_new_privileges)
    sec.cap_add = list(dict.fromkeys(normalize_cap(c) for c in opts.cap_add))
    sec.cap_drop = list(dict.fromkeys(normalize_cap(c) for c in opts.cap_drop))
    if defaults.seccomp_profile:
        sec.seccomp = _profile_text(Path(defaults.seccomp_profile))
    for opt in opts.security_opt:
        _apply_security_opt(sec, opt)
    for spec in opts.devices:
        sec.devices.extend(parse_device(spec))
    sec.device_cgroup_rules = [parse_cgroup_rule(r) for r in opts.device_cgroup_rules]
    userns, _ = parse_userns(defaults.userns if opts.userns is None else (opts.userns or "host"))
    if opts.privileged and opts.userns is not None and opts.userns.startswith("auto"):
        raise InvalidArgument("privileged mode is incompatible with user namespaces; "
                              "use --userns=host with --privileged")
    # A privileged container asked for the host's ids, even where auto is the default.
    sec.userns = "host" if opts.privileged else userns  # type: ignore[assignment]
    _compiles(sec)
    return sec


def _apply_security_opt(sec: SecurityConfig, opt: str) -> None:
    # Docker accepts both "key=value" and the older "key:value".
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    if key == "no-new-privileges":
        if value not in ("", "true", "false"):
            raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
        sec.no_new_privs = value != "false"
    elif key == "seccomp" and value:
        sec.seccomp = _checked_profile(value)
    elif key == "systempaths" and value == "unconfined":
        sec.masked_paths = False
    elif (key, value) in (("label", "disable"), ("apparmor", "unconfined")):
        pass  # tuibox applies no LSM profile, so turning one off changes nothing
    else:
        raise InvalidArgument(f"invalid --security-opt: {opt!r} (tuibox knows seccomp=, "
                              f"no-new-privileges, systempaths=unconfined, label=disable, "
                              f"apparmor=unconfined)")


def _checked_profile(value: str) -> str:
    """``unconfined``, ``builtin``/``default``, or a profile's JSON (the CLI reads the file,
    as the docker CLI does, so no path is ever resolved against the supervisor's cwd)."""
    if value == "unconfined":
        return "unconfined"
    if value in ("builtin", "default"):
        return "default"
    try:
        parse_profile(value)
    except ProfileError as exc:
        raise InvalidArgument(f"invalid seccomp profile: {exc}") from None
    return json.dumps(json.loads(value), separators=(",", ":"))


def joined_confinement(config: ContainerConfig, directory: Path, *, privileged: bool = False
                       ) -> tuple[int, bool, Program | None]:
    """(capabilities, no_new_privs, seccomp filter) for a process that joins a running
    container, as Docker gives an exec'd one: the container's own, except that
    ``exec --privileged`` gets all our capabilities (the filter stays, as in Docker).
    The filter is the one its PID 1 loaded, kept by the supervisor at start."""
    from .runtime import capabilities, seccomp

    sec = config.security
    ours = capabilities.own_permitted()
    try:
        program = seccomp.saved(directory)
    except OSError:  # started by an older tuibox: compile what its PID 1 got
        program = seccomp.program_for(sec.seccomp, cap_mask(sec) & ours,
                                      privileged=sec.privileged)
    return (ours if privileged else cap_mask(sec) & ours), sec.no_new_privs, program


def _compiles(sec: SecurityConfig) -> None:
    """A user's profile compiled now, for this container's capabilities: what libseccomp
    refuses is an error at create, never at a start."""
    from .runtime.seccomp import check

    try:
        check(sec.seccomp, cap_mask(sec))
    except ProfileError as exc:
        raise InvalidArgument(f"invalid seccomp profile: {exc}") from None


def _profile_text(path: Path) -> str:
    try:
        return _checked_profile(path.read_text())
    except OSError as exc:
        raise InvalidArgument(f"opening seccomp profile ({path}) failed: {exc.strerror}") from None
