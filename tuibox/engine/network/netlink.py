"""Bridges, veth pairs, addresses and routes over netlink (pyroute2).

Only the supervisor uses this: it is single-threaded, so it may step into a fresh
network namespace for a moment to open a netlink socket there (a netlink socket stays
bound to the namespace it was opened in) and step straight back.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..errors import SetupError
from ..runtime import _libc
from .models import Endpoint, NetworkRecord

SYSCTL = Path("/proc/sys/net/ipv4")


def _sysctl(path: Path, value: str) -> None:
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        raise SetupError("network", f"cannot set {path}: {exc.strerror}") from None


def _no_ipv6(ifname: str) -> None:
    with contextlib.suppress(OSError):  # a kernel without IPv6 has nothing to turn off
        (SYSCTL.parent / "ipv6" / "conf" / ifname / "disable_ipv6").write_text("1")


def _netlink_error(what: str, exc: NetlinkError) -> SetupError:
    return SetupError("network", f"{what}: {os.strerror(exc.code)}", errno=exc.code)


class Netlink:
    """A netlink socket in the host namespace plus the helpers that need one."""

    def __init__(self) -> None:
        self.host_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.ipr = IPRoute()
        self.bridges: dict[str, int] = {}  # bridges set up by us, by name → index
        self.mtus: dict[int, int] = {}

    def close(self) -> None:
        self.ipr.close()
        os.close(self.host_ns)

    # ------------------------------------------------------------------ namespaces

    def new_netns(self) -> int:
        """A new network namespace, held by the returned fd (O_CLOEXEC)."""
        _libc.unshare(_libc.CLONE_NEWNET)
        try:
            # No IPv6 on the interfaces to come (tuibox networks are IPv4, as Docker's are
            # by default): no link-local chatter showing up as traffic in stats.
            _no_ipv6("default")
            return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            _libc.setns(self.host_ns, _libc.CLONE_NEWNET)

    def inside(self, ns_fd: int, *, adopt: bool = False) -> IPRoute:
        """A netlink socket bound to the namespace ``ns_fd``.

        ``adopt``: a namespace a container made itself (``--userns=auto``), which gets
        what :meth:`new_netns` gives ours before its first interface arrives."""
        _libc.setns(ns_fd, _libc.CLONE_NEWNET)
        try:
            if adopt:
                _no_ipv6("default")
            return IPRoute()
        finally:
            _libc.setns(self.host_ns, _libc.CLONE_NEWNET)

    # ------------------------------------------------------------------ host side

    def index(self, ifname: str) -> int | None:
        found = self.ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def default_mtu(self) -> int:
        """The MTU of the interface the default route leaves by (1500 without one)."""
        with contextlib.suppress(NetlinkError, IndexError):
            route = self.ipr.get_default_routes(family=2)[0]
            link = self.ipr.link("get", index=route.get_attr("RTA_OIF"))[0]
            return int(link.get_attr("IFLA_MTU"))
        return 1500

    def ensure_bridge(self, net: NetworkRecord) -> int:
        """Create the network's bridge with its gateway address, or find it; its index."""
        known = self.bridges.get(net.bridge)
        if known is not None:
            return known
        index = self.index(net.bridge)
        prefix = int(net.subnet.split("/")[1])
        try:
            if index is None:
                self.ipr.link("add", ifname=net.bridge, kind="bridge")
                _no_ipv6(net.bridge)
                index = self.index(net.bridge)
                assert index is not None
                self.ipr.link("set", index=index, mtu=net.mtu or self.default_mtu())
            addrs = {a.get_attr("IFA_ADDRESS") for a in self.ipr.get_addr(index=index,
                                                                           family=2)}
            if net.gateway not in addrs:
                self.ipr.addr("add", index=index, address=net.gateway, prefixlen=prefix)
            self.ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise _netlink_error(f"cannot set up bridge {net.bridge}", exc) from None
        # Published ports answer on 127.0.0.1 too: the DNAT'd packet keeps its loopback
        # source on the way out of the bridge (masqueraded there), which needs this.
        _sysctl(SYSCTL / "conf" / net.bridge / "route_localnet", "1")
        if not net.internal:
            _sysctl(SYSCTL / "ip_forward", "1")
        self.bridges[net.bridge] = index
        return index

    def delete_link(self, ifname: str) -> None:
        """Delete an interface if it exists (a veth takes its peer with it)."""
        index = self.bridges.pop(ifname, None) or self.index(ifname)
        self.mtus.pop(index or 0, None)
        if index is None:
            return
        with contextlib.suppress(NetlinkError):
            self.ipr.link("del", index=index)

    # ------------------------------------------------------------------ endpoints

    def add_endpoint(self, ns_fd: int, inner: IPRoute, bridge_index: int, net: NetworkRecord,
                     ep: Endpoint, *, default_route: bool) -> None:
        """A veth pair: the host end up on the bridge, the other end ``ep.ifname`` in the
        container's namespace with its address, MAC and (on the first network) route.
        Six netlink round trips: the pair is born named, with its MAC and enslaved."""
        mtu = net.mtu or self.mtu(bridge_index)
        try:
            self.ipr.link("add", ifname=ep.host_ifname, kind="veth", mtu=mtu,
                          master=bridge_index,
                          peer={"ifname": ep.ifname, "net_ns_fd": ns_fd, "address": ep.mac,
                                "mtu": mtu})
        except NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise SetupError("network", f"{ep.ifname} or {ep.host_ifname} already "
                                 f"exists") from None
            if exc.code == errno.EXFULL:  # BR_MAX_PORTS: Docker's docker0 has the same limit
                raise SetupError("network", f"network {net.name} is full: a Linux bridge "
                                 f"takes at most 1023 containers; put more on another network "
                                 f"(tuibox network create)") from None
            raise _netlink_error(f"cannot create veth {ep.host_ifname}", exc) from None
        _no_ipv6(ep.host_ifname)  # before it is up: not even one IPv6 packet gets out
        # A container reaching its own published port through the host comes back in by
        # the port it left from: the bridge sends it there only in hairpin mode (it
        # matters once br_netfilter is loaded, as Docker and podman load it).
        with contextlib.suppress(OSError):
            Path(f"/sys/class/net/{ep.host_ifname}/brport/hairpin_mode").write_text("1")
        try:
            self.ipr.link("set", ifname=ep.host_ifname, state="up")
            idx = inner.link_lookup(ifname=ep.ifname)[0]
            inner.addr("add", index=idx, address=ep.ip, prefixlen=ep.prefix_len)
            inner.link("set", index=idx, state="up")
            if default_route:
                inner.route("add", dst="0.0.0.0/0", gateway=ep.gateway)
        except (NetlinkError, IndexError) as exc:
            self.delete_link(ep.host_ifname)
            detail = os.strerror(exc.code) if isinstance(exc, NetlinkError) else "vanished"
            raise SetupError("network", f"cannot configure {ep.ifname}: {detail}") from None

    def mtu(self, index: int) -> int:
        mtu = self.mtus.get(index)
        if mtu is None:
            mtu = self.mtus[index] = int(self.ipr.link("get", index=index)[0]
                                         .get_attr("IFLA_MTU"))
        return mtu
