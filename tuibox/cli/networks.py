"""``tuibox network …`` and ``tuibox port``: Docker's network verbs over the engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.errors import InvalidArgument, TuiboxError
from .containers import _each, _err, _out, _parse_kv
from .format import render_rows, render_template

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.network.models import NetworkRecord


def network_json(engine: Engine, record: NetworkRecord) -> dict[str, Any]:
    """``docker network inspect``'s shape."""
    containers = {
        cid: {"Name": ep.container_name, "EndpointID": ep.host_ifname,
              "MacAddress": ep.mac, "IPv4Address": f"{ep.ip}/{ep.prefix_len}",
              "IPv6Address": ""}
        for cid, ep in record.endpoints.items()}
    return {
        "Name": record.name, "Id": record.id, "Created": record.created.isoformat(),
        "Scope": "local", "Driver": record.driver, "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {},
                 "Config": [{"Subnet": record.subnet, "Gateway": record.gateway}]
                 if record.subnet else []},
        "Internal": record.internal, "Attachable": False, "Ingress": False,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.name": record.bridge, **record.options},
        "Labels": record.labels,
    }


def add_network_actions(p: argparse.ArgumentParser) -> None:
    """Each action its own sub-parser, so flags and names may come in any order."""
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                               parser_class=type(p))

    def action(name: str, help: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, aliases=list(aliases))

    a = action("create", "create a bridge network")
    a.add_argument("-d", "--driver", default="bridge", help="only bridge")
    a.add_argument("--subnet", help="IPv4 CIDR, e.g. 10.89.0.0/24 (default: a free one)")
    a.add_argument("--gateway", help="the gateway address (default: the subnet's first)")
    a.add_argument("--internal", action="store_true", help="no route out of the network")
    a.add_argument("--label", action="append", default=[])
    a.add_argument("-o", "--opt", action="append", default=[], help="driver options")
    a.add_argument("names", nargs=1, metavar="NETWORK")
    a = action("ls", "list networks", aliases=("list",))
    a.add_argument("-q", "--quiet", action="store_true")
    a.add_argument("--no-trunc", action="store_true")
    a.add_argument("--format", help="'json', 'table' or a Go-style template")
    a = action("inspect", "show networks in detail")
    a.add_argument("-f", "--format", help="Go-style template")
    a.add_argument("names", nargs="+", metavar="NETWORK")
    a = action("rm", "remove networks", aliases=("remove",))
    a.add_argument("names", nargs="+", metavar="NETWORK")
    a = action("prune", "remove every network no container uses")
    a.add_argument("-f", "--force", action="store_true", help="do not prompt (never does)")
    a = action("connect", "connect a container to a network (live if it runs)")
    a.add_argument("--alias", action="append", default=[], help="a network-scoped alias")
    a.add_argument("names", nargs=2, metavar="NETWORK CONTAINER")
    a = action("disconnect", "disconnect a container from a network")
    a.add_argument("-f", "--force", action="store_true", help="accepted for docker's sake")
    a.add_argument("names", nargs=2, metavar="NETWORK CONTAINER")


def cmd_network(engine: Engine, args: argparse.Namespace) -> int:
    action = {"list": "ls", "remove": "rm"}.get(args.action, args.action)
    names: list[str] = getattr(args, "names", [])
    if action == "create":
        if args.driver != "bridge":
            raise InvalidArgument(f"network driver {args.driver!r} is not supported: only "
                                  f"bridge")
        record = engine.network_create(
            names[0], subnet=args.subnet or "", gateway=args.gateway or "",
            internal=args.internal, labels=_parse_kv(args.label, "label"),
            options=_parse_kv(args.opt, "opt"))
        _out(record.id)
        return 0
    if action == "ls":
        for error in engine.networks.errors():
            _err(f"skipping a broken record: {error} (`tuibox network rm "
                 f"{Path(error.path).stem}` removes it)")
        rows = [{"ID": r.id if args.no_trunc else r.id[:12], "Name": r.name,
                 "Driver": r.driver, "Scope": "local", "Subnet": r.subnet}
                for r in engine.networks.list()]
        rows += [{"ID": "", "Name": name, "Driver": name, "Scope": "local", "Subnet": ""}
                 for name in ("host", "none")]
        if args.quiet:
            for row in rows:
                if row["ID"]:
                    _out(row["ID"])
            return 0
        text = render_rows(rows, args.format, ["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                           ["ID", "Name", "Driver", "Scope"])
        if text:
            _out(text)
        return 0
    if action == "inspect":
        results, code = [], 0
        for name in names:  # what can be shown is, each failure is reported
            try:
                results.append(network_json(engine, engine.networks.get(name)))
            except TuiboxError as exc:
                sys.stderr.write(f"Error: {exc}\n")
                code = 1
        if args.format:
            for obj in results:
                _out(render_template(args.format, obj))
        else:
            _out(json.dumps(results, indent=4))
        return code
    if action == "rm":
        return _each(names, engine.network_remove)
    if action == "prune":
        removed = engine.network_prune()
        if removed:
            _out("Deleted Networks:")
            for name in removed:
                _out(name)
        return 0
    if action == "connect":
        engine.network_connect(names[0], names[1], aliases=args.alias)
    else:
        engine.network_disconnect(names[0], names[1])
    return 0


def cmd_port(engine: Engine, args: argparse.Namespace) -> int:
    ports = engine.ports(args.container)
    if args.port:
        number, _, proto = args.port.partition("/")
        ports = [p for p in ports
                 if str(p.container_port) == number and p.proto == (proto or "tcp")]
        if not ports:
            raise InvalidArgument(f"no public port '{args.port}' published for "
                                  f"{args.container}")
        for p in ports:
            _out(f"{p.host_ip}:{p.host_port}")
        return 0
    for p in ports:
        _out(f"{p.key} -> {p.host_ip}:{p.host_port}")
    return 0
