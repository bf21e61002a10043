"""NAT and filtering rules, in nftables tables of tuibox's own.

Each state root owns one ``ip`` table (``tuibox`` for the default root).  The whole
table is rebuilt from the records in one atomic transaction whenever a network comes
up or goes, or a container with published ports starts or stops: there are no
per-rule handles to lose, a crash between changes leaves the previous complete ruleset,
and other tables on the host (Docker's, firewalld's) are never touched.  The library
runs in a helper process (``nftlib``): it may ``exit()`` its caller.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..paths import DEFAULT_ROOT


@dataclass(frozen=True)
class Forward:
    """One published port: host (address, port) → container (address, port)."""

    proto: str
    host_ip: str  # "0.0.0.0" = every local address
    host_port: int
    container_ip: str
    container_port: int


@dataclass(frozen=True)
class BridgeNet:
    bridge: str
    subnet: str
    internal: bool = False


def table_name(root: Path) -> str:
    if root.resolve() == DEFAULT_ROOT:
        return "tuibox"
    return "tuibox-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


def ruleset(table: str, networks: list[BridgeNet], forwards: list[Forward]) -> str:
    """The commands that replace ``table`` with what these networks and ports need."""
    cmds = [f"add table ip {table}", f"delete table ip {table}"]
    if not networks:
        return "\n".join(cmds) + "\n"
    bridges = ", ".join(f'"{n.bridge}"' for n in networks)
    cmds += [
        f"add table ip {table}",
        f"add chain ip {table} prerouting {{ type nat hook prerouting priority -100; }}",
        f"add chain ip {table} output {{ type nat hook output priority -100; }}",
        f"add chain ip {table} postrouting {{ type nat hook postrouting priority 100; }}",
        f"add chain ip {table} forward {{ type filter hook forward priority 0; }}",
        f"add chain ip {table} published",
        # route_localnet, set on the bridges for ports published on 127.0.0.1, also lets
        # a container address the host's loopback with a crafted frame: a 127.0.0.0/8
        # address never comes from a bridge legitimately, so such packets go, and before
        # conntrack and NAT (CVE-2020-8558's fix, stricter: not even a port published on
        # 127.0.0.1 is reachable this way).  Replies to localhost clients still carry the
        # gateway's address here; conntrack puts 127.0.0.1 back afterwards.
        f"add chain ip {table} loopback_guard {{ type filter hook prerouting priority -300; }}",
        f"add rule ip {table} loopback_guard iifname {{ {bridges} }} ip daddr 127.0.0.0/8 "
        f"counter drop",
        f"add rule ip {table} loopback_guard iifname {{ {bridges} }} ip saddr 127.0.0.0/8 "
        f"counter drop",
        # Only traffic for this host's own addresses is a candidate for port forwarding.
        f"add rule ip {table} prerouting fib daddr type local jump published",
        f"add rule ip {table} output fib daddr type local jump published",
        # Replies to localhost clients must leave the bridge from the gateway's address.
        f"add rule ip {table} postrouting oifname {{ {bridges} }} ip saddr 127.0.0.0/8 "
        f"masquerade",
    ]
    for net in networks:
        if not net.internal:
            cmds.append(f'add rule ip {table} postrouting ip saddr {net.subnet} '
                        f'oifname != "{net.bridge}" masquerade')
        # A container reaching a published port of its own network through the host:
        # without this the reply would come straight from the peer and be dropped.
        cmds.append(f'add rule ip {table} postrouting oifname "{net.bridge}" '
                    f'ct status dnat ip saddr {net.subnet} masquerade')
        others = [o.bridge for o in networks if o.bridge != net.bridge]
        if others:  # networks are isolated from each other, as Docker's are
            names = ", ".join(f'"{b}"' for b in others)
            cmds.append(f'add rule ip {table} forward iifname "{net.bridge}" '
                        f'oifname {{ {names} }} drop')
        if net.internal:
            cmds.append(f'add rule ip {table} forward iifname "{net.bridge}" '
                        f'oifname != "{net.bridge}" drop')
    for fw in forwards:
        match = "" if fw.host_ip == "0.0.0.0" else f"ip daddr {fw.host_ip} "
        cmds.append(f"add rule ip {table} published {match}{fw.proto} dport {fw.host_port} "
                    f"dnat to {fw.container_ip}:{fw.container_port}")
    return "\n".join(cmds) + "\n"
