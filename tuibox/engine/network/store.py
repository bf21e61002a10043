"""Network records and IP address management (``networks/<name>.json``).

Every change happens under one ``flock`` per state root, so concurrent ``tuibox`` calls
and the supervisor never hand out the same address; addresses are handed out lowest
free first and given back when a container stops.
"""

from __future__ import annotations

import builtins
import contextlib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..containers import now
from ..errors import Conflict, InvalidArgument, NotFound, RecordError
from ..models import PortBinding
from ..paths import DEFAULT_ROOT, StatePaths
from ..records import locked, read_record, write_atomic
from .models import Endpoint, NetworkRecord

BUILTIN = "bridge"
PSEUDO = ("host", "none")  # listed like docker's, but nothing to set up
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$")
# Ranges tried in order when no subnet is given; each is skipped while the host routes it.
# tuibox's own /16s first (what earlier versions used), then Docker's default pools:
# 172.17-31/16 and 192.168.0.0/16 in /20s.  Ranges the host routes are skipped.
BUILTIN_POOLS = [*(f"10.{n}.0.0/16" for n in range(87, 80, -1)),
                 *(f"172.{n}.0.0/16" for n in range(17, 32)),
                 *(str(net) for net in ipaddress.IPv4Network("192.168.0.0/16").subnets(
                     new_prefix=20))]
USER_POOL = [f"10.{a}.{b}.0/24" for a in range(90, 100) for b in range(256)]


def _pools(root: Path, fallback: builtins.list[str]) -> Iterator[str]:
    """``default-address-pools`` from the root's daemon.json, else ``fallback``."""
    from ..security import engine_defaults

    pools = engine_defaults(root).default_address_pools
    if not pools:
        yield from fallback
        return
    for pool in pools:
        try:
            base = ipaddress.IPv4Network(pool.base)
            yield from (str(net) for net in base.subnets(new_prefix=pool.size))
        except ValueError as exc:
            raise InvalidArgument(f"default-address-pools in daemon.json: {exc}") from None


class NetworkNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"network {ref} not found (see `tuibox network ls`)")


def host_routes(exclude_dev: str = "") -> list[tuple[str, ipaddress.IPv4Network]]:
    """(device, destination) of every IPv4 route the host has, default route excluded."""
    routes = []
    with contextlib.suppress(OSError), open("/proc/net/route") as f:
        next(f, None)
        for line in f:
            fields = line.split()
            if len(fields) < 8 or fields[0] == exclude_dev:
                continue
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
            if net.prefixlen:
                routes.append((fields[0], net))
    return routes


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """Docker's scheme: 02:42 and the four address bytes (locally administered, unique)."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


class NetworkStore:
    """The networks of one state root."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self.dir = paths.root / "networks"
        # Parsed records by path, valid while the file's (inode, mtime, size) is unchanged:
        # the supervisor reads the same few records on every start and exit.
        self._cache: dict[Path, tuple[tuple[int, int, int], NetworkRecord]] = {}

    # ------------------------------------------------------------------ records

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with locked(self.dir / "networks"):
            yield

    def _path(self, name: str) -> Path:
        return self.dir / f"{name}.json"

    def _read(self, path: Path) -> NetworkRecord:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise RecordError(str(path), "missing") from None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        hit = self._cache.get(path)
        if hit is not None and hit[0] == key:
            return hit[1]
        record = read_record(path, NetworkRecord)
        self._cache[path] = (key, record)
        return record

    def _write(self, path: Path, record: NetworkRecord) -> None:
        self._cache.pop(path, None)
        write_atomic(path, record.model_dump_json().encode())
        st = path.stat()  # what we wrote is what the next read would parse
        self._cache[path] = ((st.st_ino, st.st_mtime_ns, st.st_size), record)

    @contextlib.contextmanager
    def _changing(self, path: Path) -> Iterator[NetworkRecord]:
        """Read, let the caller change, write; a failed change never stays cached."""
        record = self._read(path)
        try:
            yield record
        except BaseException:
            self._cache.pop(path, None)
            raise
        self._write(path, record)

    def _scan(self) -> tuple[builtins.list[NetworkRecord], builtins.list[RecordError]]:
        found, bad = [], []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                found.append(self._read(path))
            except RecordError as exc:
                bad.append(exc)
        return found, bad

    def _read_all(self) -> builtins.list[NetworkRecord]:
        return self._scan()[0]  # a broken record is reported by `network ls`, never fatal

    def list(self) -> builtins.list[NetworkRecord]:
        """Every network, the built-in ``bridge`` first (made on first use)."""
        records = self._read_all()
        # A broken built-in record is reported by `network ls`, not made again over.
        if not any(r.builtin for r in records) and not self._path(BUILTIN).exists():
            with self._lock():
                records.insert(0, self._builtin_locked())
        return sorted(records, key=lambda r: (not r.builtin, r.name))

    def all(self) -> builtins.list[NetworkRecord]:
        """Every network record there is (the built-in one only once it was made)."""
        return self._read_all()

    def errors(self) -> builtins.list[RecordError]:
        return self._scan()[1]

    def get(self, ref: str) -> NetworkRecord:
        """By name, full id or unique id prefix."""
        if ref == BUILTIN:
            path = self._path(BUILTIN)
            if not path.exists():
                with self._lock():
                    return self._builtin_locked()
        path = self._path(ref)
        if NAME.match(ref) and path.exists():
            return self._read(path)
        matches = [r for r in self._read_all() if r.id.startswith(ref)] if len(ref) >= 3 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise NotFound(f"network id prefix {ref!r} is ambiguous")
        raise NetworkNotFound(ref)

    def _builtin_locked(self) -> NetworkRecord:
        path = self._path(BUILTIN)
        if path.exists():
            return self._read(path)
        net_id = secrets.token_hex(32)
        default_root = self.paths.root.resolve() == DEFAULT_ROOT
        subnet = os.environ.get("TUIBOX_BRIDGE_SUBNET", "")
        record = NetworkRecord(id=net_id, name=BUILTIN, created=now(), builtin=True,
                               bridge="tuibox0" if default_root else f"tbx-{net_id[:11]}",
                               subnet_fixed=bool(subnet))
        if subnet:
            record.subnet, record.gateway = _subnet_and_gateway(subnet, "")
        self._write(path, record)
        return record

    def create(self, name: str, *, subnet: str = "", gateway: str = "", internal: bool = False,
               labels: dict[str, str] | None = None, options: dict[str, str] | None = None,
               ) -> NetworkRecord:
        """``network create``: a user bridge network (names resolve between its members)."""
        if not NAME.match(name) or name.endswith(".json"):
            raise InvalidArgument(f"invalid network name {name!r}: use letters, digits, "
                                  f"'_', '.' and '-'")
        if name in (BUILTIN, *PSEUDO):
            raise Conflict(f"network with name {name} already exists")
        mtu = 0
        if options and "com.docker.network.driver.mtu" in options:
            mtu = _mtu(options["com.docker.network.driver.mtu"])
        with self._lock():
            if self._path(name).exists():
                raise Conflict(f"network with name {name} already exists")
            others = self._read_all()
            if subnet:
                net, gw = _subnet_and_gateway(subnet, gateway)
                mine = ipaddress.IPv4Network(net)
                for other in others:
                    if other.subnet and ipaddress.IPv4Network(other.subnet).overlaps(mine):
                        raise Conflict(f"subnet {net} overlaps network {other.name}'s "
                                       f"{other.subnet}")
            else:
                if gateway:
                    raise InvalidArgument("--gateway needs --subnet")
                net, gw = self._free_subnet(_pools(self.paths.root, USER_POOL), others)
            net_id = secrets.token_hex(32)
            record = NetworkRecord(id=net_id, name=name, created=now(), subnet=net, gateway=gw,
                                   bridge=f"tbx-{net_id[:11]}", internal=internal, mtu=mtu,
                                   labels=labels or {}, options=options or {})
            self._write(self._path(name), record)
        return record

    def remove(self, ref: str) -> NetworkRecord:
        record = self.get(ref)
        if record.builtin:
            raise Conflict(f"{record.name} is a pre-defined network and cannot be removed")
        with self._lock():
            record = self._read(self._path(record.name))
            if record.endpoints:
                names = ", ".join(sorted(e.container_name for e in record.endpoints.values()))
                raise Conflict(f"error while removing network: network {record.name} id "
                               f"{record.id[:12]} has active endpoints ({names})")
            self._path(record.name).unlink()
        return record

    def discard(self, name: str) -> bytes:
        """Delete the record of network ``name`` whatever it holds (``network rm`` of one
        that cannot be read); its bytes, for what can still be learned from them."""
        if not NAME.match(name):
            raise NetworkNotFound(name)
        with self._lock():
            path = self._path(name)
            self._cache.pop(path, None)
            try:
                raw = path.read_bytes()
                path.unlink()
            except FileNotFoundError:
                raise NetworkNotFound(name) from None
        return raw

    # ------------------------------------------------------------------ IPAM

    def _free_subnet(self, candidates: Iterable[str], others: builtins.list[NetworkRecord],
                     exclude_dev: str = "") -> tuple[str, str]:
        taken = [ipaddress.IPv4Network(o.subnet) for o in others if o.subnet]
        taken += [net for _, net in host_routes(exclude_dev)]
        for cand in candidates:
            net = ipaddress.IPv4Network(cand)
            if not any(net.overlaps(t) for t in taken):
                return str(net), str(next(net.hosts()))
        raise Conflict(f"no free address range left for a network: every range of the "
                       f"address pools is in use or routed on this host (set "
                       f'"default-address-pools" in {self.paths.root}/daemon.json, '
                       f"or give one with --subnet)")

    def allocate(self, name: str, *, container_id: str, container_name: str, hostname: str,
                 aliases: builtins.list[str], ifname: str,
                 wanted: str = "") -> tuple[NetworkRecord, Endpoint]:
        """Give the container the lowest free address on the network, or ``wanted``."""
        with self._lock():
            if name == BUILTIN:
                self._builtin_locked()
            path = self._path(name)
            if not path.exists():
                raise NetworkNotFound(name)
            with self._changing(path) as record:
                if record.builtin and not record.endpoints:
                    self._place_builtin(record)
                net = ipaddress.IPv4Network(record.subnet)
                used = {e.ip for e in record.endpoints.values() if e.container_id != container_id}
                used.add(record.gateway)
                if wanted:
                    ip = ipaddress.IPv4Address(wanted)
                    if ip not in net or ip in (net.network_address, net.broadcast_address):
                        raise Conflict(f"--ip {wanted} is not a host address of network "
                                       f"{name} ({record.subnet})")
                    if wanted in used:
                        raise Conflict(f"address {wanted} is already in use on network {name}")
                else:
                    found = next((h for h in net.hosts() if str(h) not in used), None)
                    if found is None:
                        raise Conflict(f"no free address left on network {name} "
                                       f"({record.subnet})")
                    ip = found
                endpoint = Endpoint(container_id=container_id, container_name=container_name,
                                    hostname=hostname, ip=str(ip), prefix_len=net.prefixlen,
                                    gateway=record.gateway, mac=mac_for(ip),
                                    host_ifname="veth" + secrets.token_hex(4)[:7],
                                    ifname=ifname, aliases=aliases)
                record.endpoints[container_id] = endpoint
        return record, endpoint

    def _place_builtin(self, record: NetworkRecord) -> None:
        """The built-in network takes a range the host does not route (re-checked each
        time it comes up, unless the user fixed it with ``TUIBOX_BRIDGE_SUBNET``)."""
        if record.subnet_fixed and record.subnet:
            return
        if record.subnet:
            mine = ipaddress.IPv4Network(record.subnet)
            if not any(net.overlaps(mine) for _, net in host_routes(record.bridge)):
                return
        others = [r for r in self._read_all() if not r.builtin]
        pools = _pools(self.paths.root, BUILTIN_POOLS)
        record.subnet, record.gateway = self._free_subnet(pools, others,
                                                          exclude_dev=record.bridge)

    def release(self, name: str, container_id: str) -> NetworkRecord | None:
        """Give the container's address back; the record as it is afterwards."""
        with self._lock():
            path = self._path(name)
            try:
                record = self._read(path)
            except RecordError:
                return None
            if record.endpoints.pop(container_id, None) is not None:
                self._write(path, record)
        return record

    def set_ports(self, name: str, container_id: str, ports: builtins.list[PortBinding]) -> None:
        with self._lock():
            path = self._path(name)
            record = self._read(path)
            if container_id in record.endpoints:
                record.endpoints[container_id].ports = list(ports)
                self._write(path, record)

    def endpoints_of(self, container_id: str) -> builtins.list[tuple[NetworkRecord, Endpoint]]:
        return [(r, r.endpoints[container_id]) for r in self._read_all()
                if container_id in r.endpoints]

    def active(self) -> builtins.list[NetworkRecord]:
        """Networks with at least one container on them: their bridges exist."""
        return [r for r in self._read_all() if r.endpoints]


def _subnet_and_gateway(subnet: str, gateway: str) -> tuple[str, str]:
    try:
        net = ipaddress.IPv4Network(subnet, strict=False)
    except ValueError as exc:
        raise InvalidArgument(f"invalid subnet {subnet!r}: {exc} (IPv4 CIDR, e.g. "
                              f"10.89.0.0/24)") from None
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {net} is too small: use /30 or larger")
    if not gateway:
        return str(net), str(next(net.hosts()))
    try:
        gw = ipaddress.IPv4Address(gateway)
    except ValueError:
        raise InvalidArgument(f"invalid gateway {gateway!r}") from None
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is not a host address of {net}")
    return str(net), str(gw)


def _mtu(text: str) -> int:
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise InvalidArgument(f"invalid MTU {text!r}: a number of bytes, 68-65535")
    return int(text)
