"""``-p``/``-P`` parsing and host-port reservation.

A published port is a DNAT rule plus a socket the supervisor keeps bound to the host
port while the container runs: the kernel then refuses the port to anyone else, and a
port already taken is an error at start instead of traffic silently going elsewhere.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from ..errors import InvalidArgument, SetupError
from ..models import PortBinding, PortSpec, Proto


def _port_range(text: str, flag: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        lo, hi = int(first), int(last or first)
    except ValueError:
        raise InvalidArgument(f"invalid {flag} port {text!r}: not a number") from None
    if not (1 <= lo <= hi <= 65535):
        raise InvalidArgument(f"invalid {flag} port {text!r}: must be within 1-65535")
    return lo, hi


def parse_publish(spec: str) -> list[PortSpec]:
    """``[ip:][hostPort:]containerPort[/proto]``, either port may be a range ``a-b``."""
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise InvalidArgument(f"invalid protocol {proto!r} in -p {spec!r}: use tcp or udp")
    host_ip = ""
    if body.startswith("["):  # [::1]:8080:80
        end = body.find("]")
        host_ip, body = body[1:end], body[end + 2:]
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_ip, body = parts[0], ":".join(parts[1:])
        elif len(parts) > 3:
            raise InvalidArgument(f"invalid -p {spec!r}: expected [ip:][hostPort:]containerPort")
    if host_ip:
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidArgument(f"invalid host address {host_ip!r} in -p {spec!r}") from None
        if addr.version != 4:
            raise InvalidArgument(f"-p {spec!r}: only IPv4 host addresses are supported")
        host_ip = "" if addr.is_unspecified else str(addr)
    host_text, _, container_text = body.rpartition(":")
    if not container_text:
        raise InvalidArgument(f"invalid -p {spec!r}: no container port")
    c_lo, c_hi = _port_range(container_text, "container")
    if not host_text:
        return [PortSpec(container_port=p, proto=proto, host_ip=host_ip)  # type: ignore[arg-type]
                for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _port_range(host_text, "host")
    if h_hi - h_lo != c_hi - c_lo:
        if c_lo == c_hi:  # docker: -p 8000-8010:80 takes the first free port of the range
            raise InvalidArgument(
                f"-p {spec!r}: a host port range for one container port is not supported; "
                f"name one host port")
        raise InvalidArgument(f"-p {spec!r}: host and container port ranges differ in size")
    return [PortSpec(container_port=c, proto=proto, host_ip=host_ip,  # type: ignore[arg-type]
                     host_port=h_lo + c - c_lo) for c in range(c_lo, c_hi + 1)]


def exposed_ports(exposed: dict[str, dict[str, object]] | None) -> list[PortSpec]:
    """``-P``: every port the image EXPOSEs, each to a free host port."""
    specs: list[PortSpec] = []
    for key in sorted(exposed or {}):
        port, _, proto = key.partition("/")
        if port.isdigit() and (proto or "tcp") in ("tcp", "udp"):
            specs.append(PortSpec(container_port=int(port),
                                  proto=(proto or "tcp")))  # type: ignore[arg-type]
    return specs


def merge_ports(specs: list[PortSpec]) -> list[PortSpec]:
    """Drop exact repeats; refuse one host port published twice."""
    seen: dict[tuple[str, int, Proto], PortSpec] = {}
    out: list[PortSpec] = []
    for spec in specs:
        if spec.host_port:
            key = (spec.host_ip, spec.host_port, spec.proto)
            if key in seen:
                if seen[key] == spec:
                    continue
                raise InvalidArgument(
                    f"host port {spec.host_port}/{spec.proto} is published twice")
            seen[key] = spec
        out.append(spec)
    return out


def reserve(spec: PortSpec) -> tuple[socket.socket, PortBinding]:
    """Bind the host port (any free one when ``host_port`` is 0) and keep the socket."""
    kind = socket.SOCK_STREAM if spec.proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    host_ip = spec.host_ip or "0.0.0.0"
    try:
        sock.bind((host_ip, spec.host_port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SetupError("publish ports", f"Bind for {host_ip}:{spec.host_port} failed: "
                             f"port is already allocated") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise SetupError("publish ports", f"cannot publish on {host_ip}: no such address "
                             f"on this host") from None
        raise SetupError("publish ports", f"cannot bind {host_ip}:{spec.host_port}: "
                         f"{exc.strerror}") from None
    return sock, PortBinding(container_port=spec.container_port, proto=spec.proto,
                             host_ip=host_ip, host_port=sock.getsockname()[1])
