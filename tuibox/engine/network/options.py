"""``run``'s network flags → the network part of a container's config (Docker's rules)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..containers import ContainerStore
from ..errors import InvalidArgument, NotFound
from ..models import ImageConfig, PortSpec, RunOptions
from .manager import CONTAINER_PREFIX
from .ports import exposed_ports, merge_ports, parse_publish
from .store import BUILTIN, NetworkStore


@dataclass
class NetworkConfig:
    mode: str
    networks: list[str] = field(default_factory=list)
    ports: list[PortSpec] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)


def network_config(opts: RunOptions, image: ImageConfig, networks: NetworkStore,
                   containers: ContainerStore) -> NetworkConfig:
    mode = opts.network or BUILTIN
    if mode == "default":
        mode = BUILTIN
    ports = merge_ports([p for spec in opts.publish for p in parse_publish(spec)]
                        + (exposed_ports(image.ExposedPorts) if opts.publish_all else []))
    extra_hosts = [_extra_host(h) for h in opts.add_hosts]
    for server in opts.dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"invalid --dns {server!r}: not an IP address") from None
    if mode in ("none", "host") or mode.startswith(CONTAINER_PREFIX):
        if opts.ip:
            raise InvalidArgument(f"--ip needs a user defined network, not --network {mode}")
        if opts.network_aliases:
            raise InvalidArgument("network-scoped aliases are supported only for containers "
                                  "in user defined networks")
        if mode.startswith(CONTAINER_PREFIX):
            ref = mode[len(CONTAINER_PREFIX):]
            try:
                target = containers.resolve(ref)
            except NotFound:
                raise InvalidArgument(f"--network {mode}: no such container {ref}") from None
            if ports:
                raise InvalidArgument("conflicting options: port publishing and the container "
                                      "type network mode")
            if opts.hostname:
                raise InvalidArgument("conflicting options: hostname and the network mode")
            if opts.dns or opts.add_hosts:
                raise InvalidArgument("conflicting options: dns and the network mode")
            return NetworkConfig(mode=CONTAINER_PREFIX + target)
        if mode == "none" and ports:
            raise InvalidArgument("conflicting options: port publishing and --network none")
        # Docker discards published ports under --network host (they would be no-ops).
        return NetworkConfig(mode=mode, extra_hosts=extra_hosts)
    record = networks.get(mode)
    if record.builtin and opts.network_aliases:
        raise InvalidArgument("network-scoped aliases are supported only for containers in "
                              "user defined networks")
    if opts.ip:
        if record.builtin:  # Docker's rule: the default bridge hands out addresses itself
            raise InvalidArgument("user specified IP address is supported on user defined "
                                  "networks only")
        try:
            ip = ipaddress.IPv4Address(opts.ip)
        except ValueError:
            raise InvalidArgument(f"invalid --ip {opts.ip!r}: not an IPv4 address") from None
        if ip not in ipaddress.IPv4Network(record.subnet):
            raise InvalidArgument(f"--ip {ip} is not in network {record.name}'s subnet "
                                  f"{record.subnet}")
    return NetworkConfig(mode=record.name, networks=[record.name], ports=ports,
                         extra_hosts=extra_hosts)


def _extra_host(entry: str) -> str:
    name, sep, ip = entry.partition(":")
    if not sep:  # docker also takes name=ip
        name, sep, ip = entry.partition("=")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid --add-host {entry!r}: expected name:ip") from None
    if not name:
        raise InvalidArgument(f"invalid --add-host {entry!r}: no host name")
    return f"{name}:{ip}"
