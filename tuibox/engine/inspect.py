"""``inspect``: Docker-shaped JSON for a container."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .models import ZERO_TIME, Container, ContainerConfig, PortBinding, PortSpec


def rfc3339(t: datetime) -> str:
    if t == ZERO_TIME:
        return "0001-01-01T00:00:00Z"
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z").replace(".000000000Z", "Z")


def container_json(c: Container, directory: Path, *,
                   userns_default: str = "host") -> dict[str, Any]:
    """``userns_default``: the root's (daemon.json ``userns``), as Docker shows "host"
    only for a container that opted out of a remapping default."""
    cfg, st = c.config, c.state
    sec = cfg.security
    warnings = {"Warnings": [PRIVILEGED_WARNING]} if sec.privileged else {}
    return warnings | {
        "Id": cfg.id,
        "Created": rfc3339(cfg.created),
        "Path": cfg.process.args[0],
        "Args": cfg.process.args[1:],
        "State": {
            "Status": st.status,
            "Running": st.running,
            "Paused": st.paused,
            "Restarting": st.restarting,
            "OOMKilled": st.oom_killed,
            "Dead": st.dead,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": rfc3339(st.started_at),
            "FinishedAt": rfc3339(st.finished_at),
            # tuibox's own: stretches of this run's output nobody read (keeper and
            # supervisor killed together); Until is zero if it was never taken back
            "OutputLost": [{"Since": rfc3339(g.since), "Until": rfc3339(g.until),
                            "Seconds": round(g.seconds(st.finished_at if not st.running
                                                       else datetime.now(UTC)), 3)}
                           for g in st.output_lost],
            # tuibox's own: output the log could not keep (a full disk), over all runs
            "LogLoss": {"Lines": st.log_loss.lines, "Bytes": st.log_loss.bytes,
                        "LastError": st.log_loss.error,
                        "LastAt": rfc3339(st.log_loss.last_at)},
        },
        "Image": cfg.image_id,
        "ResolvConfPath": str(directory / "resolv.conf"),
        "HostnamePath": str(directory / "hostname"),
        "HostsPath": str(directory / "hosts"),
        "LogPath": str(directory / f"{cfg.id}-json.log"),
        "Name": f"/{cfg.name}",
        "RestartCount": st.restart_count,
        "Driver": "overlay",
        "HostConfig": {
            "NetworkMode": cfg.network_mode,
            "RestartPolicy": {"Name": cfg.restart_policy.name,
                              "MaximumRetryCount": cfg.restart_policy.maximum_retry_count},
            "AutoRemove": cfg.auto_remove,
            "ReadonlyRootfs": cfg.read_only,
            "LogConfig": {"Type": "json-file", "Config": {
                "max-size": str(cfg.log_options.max_size),
                "max-file": str(cfg.log_options.max_file)}},
            "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in cfg.ulimits],
            "CgroupParent": st.cgroup.rsplit("/", 1)[0] if st.cgroup else "tuibox",
            "PortBindings": _port_map(cfg.ports, resolved=False),
            "PublishAllPorts": False,
            "Dns": cfg.dns,
            "DnsSearch": cfg.dns_search,
            "DnsOptions": cfg.dns_options,
            "ExtraHosts": cfg.extra_hosts,
            "Privileged": sec.privileged,
            "CapAdd": sec.cap_add or None,
            "CapDrop": sec.cap_drop or None,
            "SecurityOpt": _security_opt(cfg) or None,
            "UsernsMode": "" if sec.userns == userns_default == "host" else sec.userns,
        } | _id_mappings(cfg),
        "NetworkSettings": network_settings(c),
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(cfg.layer_dirs)),
            "UpperDir": str(directory / "upper"),
            "WorkDir": str(directory / "work"),
        }},
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.process.user,
            "Env": cfg.process.env,
            "Cmd": cfg.cmd,
            "Entrypoint": cfg.entrypoint,
            "Image": cfg.image,
            "WorkingDir": cfg.process.cwd,
            "Labels": cfg.labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
            "Tty": cfg.process.tty,
            "OpenStdin": cfg.process.open_stdin,
            "ExposedPorts": {p.key: {} for p in cfg.ports} or None,
        },
    }


PRIVILEGED_WARNING = ("privileged: all capabilities and devices, no seccomp filter, no masked "
                      "paths, writable /sys: root in this container is root on the host")


def _security_opt(cfg: ContainerConfig) -> list[str]:
    """Docker's ``SecurityOpt`` list, rebuilt from what the flags resolved to."""
    sec = cfg.security
    opts = ["no-new-privileges"] if sec.no_new_privs else []
    if sec.seccomp != "default":
        opts.append(f"seccomp={sec.seccomp}")
    if not sec.masked_paths and not sec.privileged:
        opts.append("systempaths=unconfined")
    return opts


def _id_mappings(cfg: ContainerConfig) -> dict[str, Any]:
    """Podman's ``HostConfig.IDMappings`` ("container:host:size"), with a user namespace."""
    ids = cfg.security.id_range
    if ids is None:
        return {}
    line = [f"0:{ids.start}:{ids.size}"]
    return {"IDMappings": {"UidMap": line, "GidMap": list(line)}}


def _port_map(ports: list[PortSpec] | list[PortBinding], *,
              resolved: bool) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for p in ports:
        host_port = str(p.host_port) if p.host_port or resolved else ""
        out.setdefault(p.key, []).append({"HostIp": p.host_ip, "HostPort": host_port})
    return out


def network_settings(c: Container) -> dict[str, Any]:
    """Docker's ``NetworkSettings``: the primary network's address at the top level."""
    nets = c.state.network.networks
    first = nets[c.config.networks[0]] if c.config.networks and \
        c.config.networks[0] in nets else None
    return {
        "Ports": _port_map(c.state.network.ports, resolved=True),
        "SandboxKey": f"/proc/{c.state.pid}/ns/net" if c.state.pid else "",
        "Gateway": first.gateway if first else "",
        "IPAddress": first.ip if first else "",
        "IPPrefixLen": first.prefix_len if first else 0,
        "MacAddress": first.mac if first else "",
        "Networks": {
            name: {"NetworkID": n.network_id, "IPAddress": n.ip, "IPPrefixLen": n.prefix_len,
                   "Gateway": n.gateway, "MacAddress": n.mac, "Aliases": n.aliases or None}
            for name, n in nets.items()},
    }
