"""NAT and filtering through libnftables, in tables of tuibox's own.

Each state root owns one ``ip`` table (``tuibox`` for the default root).  The whole
table is rebuilt from the records in one atomic transaction whenever a network comes
up or goes, or a container with published ports starts or stops: there are no
per-rule handles to lose, a crash between changes leaves the previous complete ruleset,
and other tables on the host (Docker's, firewalld's) are never touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import SetupError
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


class Nft:
    """A libnftables context (the library ``nft`` itself is built on)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise SetupError("network", f"libnftables is not installed ({exc}); "
                             f"install the nftables package") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib = lib
        self.ctx = lib.nft_ctx_new(0)
        lib.nft_ctx_buffer_output(self.ctx)
        lib.nft_ctx_buffer_error(self.ctx)

    def run(self, commands: str) -> str:
        """Run ``commands`` as one transaction; its output, or ``SetupError``."""
        rc = self.lib.nft_run_cmd_from_buffer(self.ctx, commands.encode())
        out = (self.lib.nft_ctx_get_output_buffer(self.ctx) or b"").decode()
        err = (self.lib.nft_ctx_get_error_buffer(self.ctx) or b"").decode().strip()
        if rc != 0:
            raise SetupError("network rules", f"nftables refused the rules: {err}")
        return out
