"""A container's ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``.

They live in the container's directory and are bind-mounted in.  On a user network the
hosts file also names every other container on it (and is rewritten in place as they
come and go: a bind mount pins the inode, so a rename would not be seen).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..models import ContainerConfig
from ..records import write_atomic
from .models import Endpoint

LOCALHOST = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes",
             "ff02::2\tip6-allrouters"]
# Docker's fallback when the host has no resolver a container could reach.
FALLBACK_DNS = ["8.8.8.8", "8.8.4.4"]
# With systemd-resolved the host's resolv.conf names only its 127.0.0.53 stub; the real
# upstream servers are here (Docker reads the same file).
RESOLVED_UPSTREAM = Path("/run/systemd/resolve/resolv.conf")
HOST_RESOLV = Path("/etc/resolv.conf")


def _nameservers(lines: list[str]) -> list[str]:
    return [ln.split()[1] for ln in lines if ln.startswith("nameserver") and len(ln.split()) > 1]


def _is_loopback(server: str) -> bool:
    return server.startswith("127.") or server == "::1"


def hosts_file(config: ContainerConfig, own: list[Endpoint], peers: list[Endpoint]) -> str:
    if config.network_mode == "host":
        try:
            lines = Path("/etc/hosts").read_text().splitlines()
        except OSError:
            lines = list(LOCALHOST)
    else:
        lines = list(LOCALHOST)
        if own:
            names = [config.hostname, *([config.name] if config.name != config.hostname
                                        else []), *own[0].aliases]
            lines.append(f"{own[0].ip}\t{' '.join(names)}")
        else:
            lines.append(f"127.0.1.1\t{config.hostname}")
    for entry in config.extra_hosts:
        name, _, ip = entry.partition(":")
        lines.append(f"{ip}\t{name}")
    seen = set()
    for peer in peers:  # other containers on the same user networks
        if peer.container_id in seen:
            continue
        seen.add(peer.container_id)
        lines.append(f"{peer.ip}\t{' '.join([peer.container_name, *peer.aliases])}")
    return "\n".join(lines) + "\n"


def resolv_conf(config: ContainerConfig) -> str:
    try:
        host = HOST_RESOLV.read_text().splitlines()
    except OSError:
        host = []
    if config.network_mode == "host" and not (config.dns or config.dns_search
                                              or config.dns_options):
        return "\n".join(host) + ("\n" if host else "")
    servers = _nameservers(host)
    search = next((ln.split()[1:] for ln in host if ln.startswith("search")), [])
    options = next((ln.split()[1:] for ln in host if ln.startswith("options")), [])
    if config.network_mode != "host":
        # Loopback resolvers mean nothing inside another netns (Docker drops them too).
        if servers and all(_is_loopback(s) for s in servers):
            with contextlib.suppress(OSError):
                servers = _nameservers(RESOLVED_UPSTREAM.read_text().splitlines())
        servers = [s for s in servers if not _is_loopback(s)]
        if not servers and config.network_mode != "none":
            servers = list(FALLBACK_DNS)
    servers = config.dns or servers
    search = config.dns_search or search
    options = config.dns_options or options
    lines = [f"nameserver {s}" for s in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + ("\n" if lines else "")


def write_etc_files(directory: Path, config: ContainerConfig, *, own: list[Endpoint],
                    peers: list[Endpoint]) -> None:
    """Before a start: fresh files (nothing has them mounted yet)."""
    write_atomic(directory / "hostname", f"{config.hostname}\n".encode())
    write_atomic(directory / "hosts", hosts_file(config, own, peers).encode())
    write_atomic(directory / "resolv.conf", resolv_conf(config).encode())


def rewrite_in_place(path: Path, text: str) -> None:
    """Update a file a running container has bind-mounted."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
