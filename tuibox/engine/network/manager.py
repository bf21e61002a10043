"""The supervisor's side of networking: set a container's network up before its PID 1
exists, tear it down when it exits, keep NAT rules and hosts files in step.

Set-up order for a bridge network: a fresh network namespace (held by an fd) → an
address from the network's IPAM → the bridge (created with the first container on it)
→ a veth pair into the namespace → published ports bound and DNAT'd.  The container's
first child then joins that namespace instead of making its own.  Anything that fails
is undone before the error reaches the user.

With ``--userns=auto`` the container's first child makes the namespace itself, after
its user namespace (which then owns it: its root may ping, open raw sockets and set its
links up, as under runc with Docker's userns-remap).  Everything but the veth pairs is
done before the fork as above; :meth:`NetworkManager.plug` puts them in while the child
waits (``runtime.spawn``).  ``--network host`` stays the host's namespace, which no
container's user namespace can own: there its root has no network capabilities.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..containers import ContainerStore
from ..errors import ContainerNotFound, RecordError, SetupError, TuiboxError
from ..liveness import open_live
from ..models import ContainerConfig, ContainerNetwork, NetworkSettings, PortSpec
from ..paths import StatePaths
from .etcfiles import hosts_file, rewrite_in_place
from .models import Endpoint, NetworkRecord
from .nft import BridgeNet, Forward, ruleset, table_name
from .nftlib import Nft
from .ports import reserve
from .store import BUILTIN, NetworkStore

if TYPE_CHECKING:
    from pyroute2 import IPRoute

    from .netlink import Netlink

CONTAINER_PREFIX = "container:"
# A bridge whose last container left stays this long: `run --rm` after `run --rm` would
# otherwise build and tear down a bridge and its rules every time (~80 ms each).
IDLE_BRIDGE_SECONDS = float(os.environ.get("TUIBOX_IDLE_BRIDGE_SECONDS", "60"))


@dataclass
class Attachment:
    """What a starting container's network is: the namespace to join (-1: make its own,
    or the host's with ``host``) and what to tell ``inspect``."""

    ns_fd: int = -1
    host: bool = False
    settings: NetworkSettings = field(default_factory=NetworkSettings)
    own: list[Endpoint] = field(default_factory=list)
    peers: list[Endpoint] = field(default_factory=list)
    shared_from: str = ""  # container:<id> — its hosts and resolv.conf are copied
    # Allocated endpoints whose veth pairs are still to go in: (bridge index, network,
    # endpoint).  Non-empty after attach only for a namespace the container makes.
    pending: list[tuple[int, NetworkRecord, Endpoint]] = field(default_factory=list)

    def close(self) -> None:
        if self.ns_fd >= 0:
            os.close(self.ns_fd)
            self.ns_fd = -1


class NetworkManager:
    def __init__(self, paths: StatePaths, containers: ContainerStore,
                 log: Callable[[str], None],
                 call_later: Callable[[float, Callable[[], None]], object]) -> None:
        self.paths = paths
        self.containers = containers
        self.store = NetworkStore(paths)
        self.table = table_name(paths.root)
        self.log = log
        self.sockets: dict[str, list[socket.socket]] = {}  # held host ports, by container
        self._netlink: Netlink | None = None
        self._nft: Nft | None = None
        self._nft_ok = False  # nf_tables answered once: bridge networking can work here
        self._rules = ""  # the last ruleset applied
        self._ruled: set[str] = set()  # the bridges it names: every one this root has up
        self.joined: dict[str, set[str]] = {}  # cid → containers in its netns (container:)
        # Kept bridges, by network id: a network removed and made again under its name is
        # another bridge, and the old one must still be found and deleted.
        self.idle: dict[str, tuple[NetworkRecord, float]] = {}
        self.call_later = call_later

    @property
    def netlink(self) -> Netlink:
        if self._netlink is None:  # pyroute2 costs ~140 ms to import: only when needed
            from .netlink import Netlink

            self._netlink = Netlink()
        return self._netlink

    # ------------------------------------------------------------------ start / exit

    def attach(self, config: ContainerConfig) -> Attachment:
        mode = config.network_mode
        if mode == "host":
            return Attachment(host=True)
        if mode == "none":
            return Attachment()
        if mode.startswith(CONTAINER_PREFIX):
            return self._join(config, mode[len(CONTAINER_PREFIX):])
        self._require_nft()
        own_userns = config.security.userns == "auto"  # it makes its namespace itself
        att = Attachment(ns_fd=-1 if own_userns else self.netlink.new_netns())
        try:
            self._connect_all(config, att)
            self._publish(config, att)
            self.sync()
        except BaseException:
            att.close()
            self.detach(config.id)
            raise
        self._refresh_peers(config.id, list(config.networks))
        return att

    def _join(self, config: ContainerConfig, ref: str) -> Attachment:
        try:
            target = self.containers.get(self.containers.resolve(ref))
        except (ContainerNotFound, RecordError) as exc:
            raise SetupError("network", f"cannot join the network of {ref}: {exc}") from None
        # Verified, never a bare pid: a stale record's pid may be a host process now, and
        # joining its namespace would put this container on the host's network.
        proc = open_live(target.state, ("net",))
        if proc is None:
            raise SetupError("network", f"cannot join the network of container {ref}: it "
                             f"is not running")
        with proc:
            fd = proc.ns.pop("net")  # ours now: close() leaves it open
        self.joined.setdefault(target.id, set()).add(config.id)
        # Its addresses are the other's; its published ports stay the other's (Docker's
        # `ps` shows them on one container only).
        settings = NetworkSettings(networks=dict(target.state.network.networks))
        return Attachment(ns_fd=fd, settings=settings, shared_from=target.id)

    def _connect_all(self, config: ContainerConfig, att: Attachment) -> None:
        for i, name in enumerate(config.networks):
            att.pending.append(self._allocate(config, name, f"eth{i}", settings=att.settings,
                                              own=att.own, wanted=config.ip if i == 0 else ""))
        att.peers = self._peers_of(config.id)
        if att.ns_fd >= 0:
            self.plug(att, att.ns_fd)

    def plug(self, att: Attachment, ns_fd: int, *, adopt: bool = False) -> None:
        """The veth pairs of ``att``'s endpoints into the namespace ``ns_fd``, the first
        with the default route.  ``adopt``: a namespace the container made (runtime.spawn
        calls this while the container's first child waits in it)."""
        inner = self.netlink.inside(ns_fd, adopt=adopt)
        try:
            for i, (bridge, record, ep) in enumerate(att.pending):
                self.netlink.add_endpoint(ns_fd, inner, bridge, record, ep,
                                          default_route=i == 0)
        finally:
            inner.close()
        att.pending.clear()

    def _connect_one(self, config: ContainerConfig, name: str, ns_fd: int, inner: IPRoute,
                     ifname: str, *, settings: NetworkSettings, aliases: list[str]) -> None:
        bridge, record, ep = self._allocate(config, name, ifname, settings=settings, own=[],
                                            aliases=aliases)
        self.netlink.add_endpoint(ns_fd, inner, bridge, record, ep, default_route=False)

    def _allocate(self, config: ContainerConfig, name: str, ifname: str, *,
                  settings: NetworkSettings, own: list[Endpoint],
                  aliases: list[str] | None = None,
                  wanted: str = "") -> tuple[int, NetworkRecord, Endpoint]:
        """An address on network ``name`` and its bridge, up; the veth pair comes later."""
        user_net = name != BUILTIN
        record, ep = self.store.allocate(
            name, container_id=config.id, container_name=config.name,
            hostname=config.hostname, ifname=ifname, wanted=wanted,
            aliases=(aliases if aliases is not None else config.network_aliases)
            if user_net else [])
        if len(record.endpoints) == 1 and self.idle.pop(record.id, None) is None:
            self._rules = ""  # the bridge is new: its rules must go in
            self.netlink.bridges.pop(record.bridge, None)  # and it is checked, not assumed
            self._drop_replaced(record)
        bridge = self.netlink.ensure_bridge(record)
        own.append(ep)
        settings.networks[name] = ContainerNetwork(
            network_id=record.id, ip=ep.ip, prefix_len=ep.prefix_len, gateway=ep.gateway,
            mac=ep.mac, aliases=ep.aliases)
        return bridge, record, ep

    def _publish(self, config: ContainerConfig, att: Attachment) -> None:
        held: list[socket.socket] = []
        self.sockets[config.id] = held
        for spec in config.ports:
            sock, binding = reserve(spec)
            held.append(sock)
            att.settings.ports.append(binding)
        if att.settings.ports and att.own:
            self.store.set_ports(config.networks[0], config.id, att.settings.ports)

    def detach(self, cid: str, *, netns_dying: bool = False) -> None:
        """Undo everything :meth:`attach` did (also for a half-done attach).

        ``netns_dying``: the container's namespace goes with its last process, and the
        kernel then removes its veth pairs itself, batched.  Deleting one by hand costs
        ~16 ms of the supervisor's time (the kernel waits out RCU per device)."""
        for sock in self.sockets.pop(cid, []):
            sock.close()
        for members in self.joined.values():
            members.discard(cid)
        if self.joined.get(cid):
            netns_dying = False  # others live in it: their veth must go now
        networks = []
        for record, ep in self.store.endpoints_of(cid):
            networks.append(record.name)
            self._disconnect_endpoint(record, ep, delete_veth=not netns_dying)
        if networks:
            self.sync()
            self._refresh_peers(cid, networks)

    def _disconnect_endpoint(self, record: NetworkRecord, ep: Endpoint, *,
                             delete_veth: bool = True) -> None:
        if delete_veth:
            self.netlink.delete_link(ep.host_ifname)
        after = self.store.release(record.name, ep.container_id)
        if after is not None and not after.endpoints:
            self.idle[record.id] = (after, time.monotonic())
            self.call_later(IDLE_BRIDGE_SECONDS + 0.1, self.reap_idle)

    def reap_idle(self, *, everything: bool = False) -> None:
        """Remove the bridges (and their rules) no container has used for a while."""
        now = time.monotonic()
        self._reap([net_id for net_id, (_, since) in self.idle.items()
                    if everything or now - since >= IDLE_BRIDGE_SECONDS])

    def _drop_replaced(self, record: NetworkRecord) -> None:
        """A kept bridge of a network that was removed, and made again with this name or
        subnet, goes before the new bridge comes: two bridges with one subnet split its
        routes, and published ports stop answering."""
        mine = ipaddress.IPv4Network(record.subnet)
        self._reap([net_id for net_id, (old, _) in self.idle.items() if net_id != record.id
                    and (old.name == record.name
                         or (old.subnet and ipaddress.IPv4Network(old.subnet).overlaps(mine)))])

    def _reap(self, net_ids: list[str]) -> None:
        gone: list[str] = []
        for net_id in net_ids:
            record, _ = self.idle.pop(net_id)
            try:
                now_there = self.store.get(record.name)
                in_use = now_there.id == net_id and bool(now_there.endpoints)
            except TuiboxError:  # removed (or broken) meanwhile: its bridge goes all the same
                in_use = False
            if not in_use:
                gone.append(record.bridge)
        if gone:
            self.sync()  # the rules naming a bridge go before the bridge does
            for bridge in gone:
                self.netlink.delete_link(bridge)

    def sweep(self, running: set[str]) -> None:
        """After an adoption: free what containers that are gone still hold, and put
        back the rules of those still running."""
        for cid in running:
            with contextlib.suppress(TuiboxError):
                mode = self.containers.config(cid).network_mode
                if mode.startswith(CONTAINER_PREFIX):
                    self.joined.setdefault(mode[len(CONTAINER_PREFIX):], set()).add(cid)
        records = self.store.all()
        if not records:
            return  # this root never had a network: no bridge, rule or port to mind
        now = time.monotonic()
        for record in records:
            if not record.endpoints and os.path.exists(f"/sys/class/net/{record.bridge}"):
                self.idle[record.id] = (record, now)  # kept by a killed predecessor
                self.call_later(IDLE_BRIDGE_SECONDS + 0.1, self.reap_idle)
            for cid, ep in list(record.endpoints.items()):
                if cid not in running:
                    self.log(f"releasing {ep.ip} on {record.name}: container {cid[:12]} "
                             f"is gone")
                    self._disconnect_endpoint(record, ep)
                    continue
                for binding in ep.ports:  # hold its host ports again
                    with contextlib.suppress(SetupError):
                        sock, _ = reserve(PortSpec(
                            container_port=binding.container_port, proto=binding.proto,
                            host_ip="" if binding.host_ip == "0.0.0.0" else binding.host_ip,
                            host_port=binding.host_port))
                        self.sockets.setdefault(cid, []).append(sock)
        self._rules = ""
        self.sync()  # puts back the rules of the running ones, or drops a stale table

    # ------------------------------------------------------------------ connect / disconnect

    def connect(self, config: ContainerConfig, ns_fd: int, name: str,
                aliases: list[str]) -> ContainerNetwork:
        """Attach a running container to one more network (a new ``ethN``) in its network
        namespace ``ns_fd`` (the caller's, opened through ``liveness.open_live``)."""
        self._require_nft()
        inner = self.netlink.inside(ns_fd)
        try:
            used = {ep.ifname for _, ep in self.store.endpoints_of(config.id)}
            ifname = next(f"eth{i}" for i in range(64) if f"eth{i}" not in used)
            settings = NetworkSettings()
            try:
                self._connect_one(config, name, ns_fd, inner, ifname, settings=settings,
                                  aliases=aliases)
            except BaseException:
                for record, ep in self.store.endpoints_of(config.id):
                    if record.name == name:
                        self._disconnect_endpoint(record, ep)
                raise
        finally:
            inner.close()
        self.sync()
        self._refresh_peers(config.id, [name])
        self._refresh_own(config)
        return settings.networks[name]

    def disconnect(self, config: ContainerConfig, name: str) -> None:
        found = [(r, ep) for r, ep in self.store.endpoints_of(config.id) if r.name == name]
        if not found:
            raise TuiboxError(f"container {config.name} is not connected to network {name}")
        for record, ep in found:
            self._disconnect_endpoint(record, ep)
        self.sync()
        self._refresh_peers(config.id, [name])
        self._refresh_own(config)

    # ------------------------------------------------------------------ rules and names

    @property
    def nft(self) -> Nft:
        if self._nft is None:
            self._nft = Nft()
        return self._nft

    def _require_nft(self) -> None:
        """Before the first bridge is built: a host without nf_tables gets a clear error
        and nothing to undo (a bridge without its rules would be reachable but unsafe)."""
        if not self._nft_ok:
            self.nft.probe()  # NftUnavailable names the reason
            self._nft_ok = True

    def sync(self) -> None:
        """Make this root's nftables table match the records (no-op when it does)."""
        active = self.store.active()
        ids = {r.id for r in active}
        active += [record for net_id, (record, _) in self.idle.items() if net_id not in ids]
        nets = [BridgeNet(r.bridge, r.subnet, r.internal) for r in active]
        forwards = [Forward(b.proto, b.host_ip, b.host_port, ep.ip, b.container_port)
                    for r in active for ep in r.endpoints.values() for b in ep.ports]
        text = ruleset(self.table, nets, forwards)
        if text == self._rules:
            return
        self.nft.run(text)
        self._rules = text
        self._ruled = {n.bridge for n in nets}

    def _peers_of(self, cid: str) -> list[Endpoint]:
        """Other containers on the user networks ``cid`` is on (named in its hosts)."""
        peers = []
        for record in self.store.active():
            if record.builtin or cid not in record.endpoints:
                continue
            peers += [ep for other, ep in record.endpoints.items() if other != cid]
        return peers

    def _refresh_peers(self, cid: str, networks: list[str]) -> None:
        """Rewrite the hosts files of the others on these user networks."""
        touched: set[str] = set()
        for record in self.store.active():
            if record.builtin or record.name not in networks:
                continue
            touched.update(other for other in record.endpoints if other != cid)
        for other in touched:
            with contextlib.suppress(TuiboxError):
                self._refresh_own(self.containers.config(other))

    def _refresh_own(self, config: ContainerConfig) -> None:
        own = [ep for _, ep in self.store.endpoints_of(config.id)]
        own.sort(key=lambda ep: ep.ifname)
        text = hosts_file(config, own, self._peers_of(config.id))
        rewrite_in_place(self.containers.dir(config.id) / "hosts", text)

    def let_go(self) -> None:
        """The state root vanished with every network record: delete its bridges (those
        in the rules, kept idle or made by us) and its table now, and free its ports."""
        bridges = self._ruled | {record.bridge for record, _ in self.idle.values()}
        if self._netlink is not None:
            bridges |= set(self._netlink.bridges)
        self.idle.clear()
        for held in self.sockets.values():
            for sock in held:
                sock.close()
        self.sockets.clear()
        if self._rules:
            self._rules = "?"  # whatever was applied: the table must go
            self.sync()  # no records left: the table is deleted
        for bridge in bridges:
            self.netlink.delete_link(bridge)

    def close(self) -> None:
        """The supervisor is going: no bridge, rule or held port stays behind."""
        if self.idle:
            self.reap_idle(everything=True)
        for held in self.sockets.values():
            for sock in held:
                sock.close()
        self.sockets.clear()
        if self._netlink is not None:
            self._netlink.close()
        if self._nft is not None:
            self._nft.close()
