"""Networking (issue #6): bridges, IPAM, published ports, names, NAT, isolation, clean-up.

Traffic goes only to loopback, to container addresses on bridges these tests make, and
to an "outside" network namespace the ``outside`` fixture makes (a veth to the host).
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_container_runtime import sh
from tuibox.engine import Engine, RunOptions
from tuibox.engine.errors import Conflict, InvalidArgument, NotFound, SetupError
from tuibox.engine.network.nft import table_name

OUTSIDE_HOST_IP, OUTSIDE_IP = "10.250.0.1", "10.250.0.2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0, netns_pid: int = 0) -> str:
    """GET ``url`` (from another network namespace with ``netns_pid``), retried while the
    server comes up."""
    code = ("import sys, urllib.request\n"
            "sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())")
    cmd = [sys.executable, "-c", code, url]
    if netns_pid:
        cmd = ["nsenter", "-t", str(netns_pid), "-n", *cmd]
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc.stdout if proc.returncode == 0 else f"FAILED: {proc.stderr[-300:]}"
        time.sleep(0.1)


def web(engine: Engine, tmp_path: Path, text: str = "hello from the container", **opts: object,
        ) -> str:
    """A busybox httpd container serving ``text`` on port 80; its id."""
    www = tmp_path / "www"
    www.mkdir(exist_ok=True)
    (www / "index.html").write_text(text)
    config = engine.run(RunOptions(image="busybox", command=["httpd", "-f", "-p", "80",
                                                            "-h", "/www"],
                                   volumes=[f"{www}:/www:ro"], **opts))  # type: ignore[arg-type]
    return config.id


def links() -> set[str]:
    return {p.name for p in Path("/sys/class/net").iterdir()}


@pytest.fixture
def outside() -> Iterator[int]:
    """Another host: a network namespace (held by a sleeping process, whose pid this is)
    with a veth to ours and no route to the containers."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    try:
        ns = str(holder.pid)
        time.sleep(0.05)
        inside = ["nsenter", "-t", ns, "-n"]
        for cmd in (
            ["ip", "link", "add", "tbt-out0", "type", "veth", "peer", "name", "tbt-out1",
             "netns", ns],
            ["ip", "addr", "add", f"{OUTSIDE_HOST_IP}/24", "dev", "tbt-out0"],
            ["ip", "link", "set", "tbt-out0", "up"],
            [*inside, "ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "tbt-out1"],
            [*inside, "ip", "link", "set", "tbt-out1", "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(cmd, check=True)
        yield holder.pid
    finally:
        subprocess.run(["ip", "link", "del", "tbt-out0"], capture_output=True)
        holder.kill()
        holder.wait()


def test_published_port_from_loopback_and_from_another_host(
        engine: Engine, tmp_path: Path, outside: int) -> None:
    port = free_port()
    cid = web(engine, tmp_path, publish=[f"{port}:80"])
    assert http_get(f"http://127.0.0.1:{port}/") == "hello from the container"
    # From another host, through the address our side of its link has.
    got = http_get(f"http://{OUTSIDE_HOST_IP}:{port}/", netns_pid=outside)
    assert got == "hello from the container"
    # The host port is held while the container runs: nobody else can take it.
    with socket.socket() as s, pytest.raises(OSError):
        s.bind(("0.0.0.0", port))
    c = engine.get(cid)
    settings = engine.inspect(cid)["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]}
    assert ipaddress.ip_address(settings["IPAddress"]) in ipaddress.ip_network(
        engine.networks.get("bridge").subnet)
    assert settings["MacAddress"] == "02:42:" + ":".join(
        f"{b:02x}" for b in ipaddress.ip_address(settings["IPAddress"]).packed)
    assert settings["Gateway"] == engine.networks.get("bridge").gateway
    assert [str(p) for p in engine.ports(cid)] == [f"0.0.0.0:{port}->80/tcp"]
    # Counters for stats come from the container's own namespace.
    assert engine.stats([cid])[cid].net_tx > 0
    bridge = engine.networks.get("bridge").bridge
    assert bridge in links()
    engine.stop(cid, timeout=0)
    assert c.state.network.networks  # it had one while running …
    assert not engine.get(cid).state.network.networks  # … and gave it back
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # the port is free again
    # The bridge outlives its last container for a while (the next one reuses it), and
    # goes with the supervisor at the latest.
    assert bridge in links()
    engine.shutdown()
    assert bridge not in links()


def test_port_bound_to_one_address_and_random_host_port(engine: Engine, tmp_path: Path) -> None:
    cid = web(engine, tmp_path, publish=["127.0.0.1::80"])
    [binding] = engine.ports(cid)
    assert binding.host_ip == "127.0.0.1" and binding.host_port > 0
    assert http_get(f"http://127.0.0.1:{binding.host_port}/") == "hello from the container"


def test_port_conflict_is_a_clear_error_and_leaves_nothing(engine: Engine, tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        before = links()
        with pytest.raises(SetupError, match=f"0.0.0.0:{port} failed: port is already allocated"):
            web(engine, tmp_path, publish=[f"{port}:80"])
        assert not [name for name in links() - before if name.startswith("veth")]
        assert engine.networks.get("bridge").endpoints == {}
    # Two containers asking for the same host port: the second is refused at start.
    web(engine, tmp_path, publish=[f"{port}:80"])
    with pytest.raises(SetupError, match="already allocated"):
        web(engine, tmp_path, publish=[f"{port}:80"])
    assert len(engine.networks.get("bridge").endpoints) == 1


def test_user_network_names_and_isolation(engine: Engine) -> None:
    engine.network_create("appnet", subnet="10.89.0.0/24")
    engine.network_create("othernet")
    db = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], name="db",
                               network="appnet", network_aliases=["database"]))
    ip = engine.get(db.id).state.network.networks["appnet"].ip
    assert ip == "10.89.0.2"
    code, out, _ = sh(engine, "ping -c1 -W2 db && ping -c1 -W2 database && "
                              f"ping -c1 -W2 {ip} >/dev/null && echo reached", network="appnet")
    assert code == 0 and "reached" in out, out
    # Not from another user network, and not from the default bridge, by name or address.
    code, out, _ = sh(engine, f"ping -c1 -W1 {ip}", network="othernet")
    assert code != 0
    code, _, err = sh(engine, "ping -c1 -W1 db", network="bridge")
    assert code != 0 and "bad address" in err
    # The others' hosts files follow the members as they come and go.
    hosts = (engine.containers.dir(db.id) / "hosts").read_text()
    assert f"{ip}\t" in hosts and "db" in hosts
    web_c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], name="webby",
                                  network="appnet"))
    assert "webby" in (engine.containers.dir(db.id) / "hosts").read_text()
    engine.remove(web_c.id, force=True)
    assert "webby" not in (engine.containers.dir(db.id) / "hosts").read_text()
    with pytest.raises(Conflict, match="in use by container"):
        engine.network_remove("appnet")
    engine.remove(db.id, force=True)
    engine.prune()  # the stopped one-off containers above were on these networks too
    assert engine.network_remove("appnet") == "appnet"
    assert engine.network_prune() == ["othernet"]
    assert [n.name for n in engine.networks.list()] == ["bridge"]


def test_twenty_concurrent_runs_get_twenty_addresses(root: Path, engine: Engine) -> None:
    def run_one(i: int) -> str:
        proc = subprocess.run(["tuibox", "--root", str(root), "run", "-d", "--name", f"c{i}",
                               "busybox", "sleep", "1d"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(run_one, range(20)))
    ips = {engine.get(cid).state.network.networks["bridge"].ip for cid in ids}
    assert len(ips) == 20
    assert len(engine.networks.get("bridge").endpoints) == 20


def test_egress_is_masqueraded(engine: Engine, tmp_path: Path, outside: int) -> None:
    """The outside host has no route to the containers: replies arrive only through NAT."""
    www = tmp_path / "outside-www"
    www.mkdir()
    (www / "index.html").write_text("outside")
    server = subprocess.Popen(["nsenter", "-t", str(outside), "-n", sys.executable, "-m",
                               "http.server", "-b", OUTSIDE_IP, "-d", str(www), "9000"],
                              stderr=subprocess.DEVNULL)
    try:
        # (not the shell's last command: PID 1 would ignore timeout's signal)
        code, out, err = sh(engine, f"timeout 5 wget -q -O - http://{OUTSIDE_IP}:9000/; "
                                    "exit $?")
        assert (code, out) == (0, "outside"), err
        # --internal networks get no way out.
        engine.network_create("sealed", internal=True)
        code, out, _ = sh(engine, f"timeout 3 wget -q -O - http://{OUTSIDE_IP}:9000/; "
                                  "exit $?", network="sealed")
        assert code != 0
    finally:
        server.kill()
        server.wait()


def test_container_network_mode_shares_the_namespace(engine: Engine, tmp_path: Path) -> None:
    port = free_port()
    cid = web(engine, tmp_path, publish=[f"{port}:80"])
    code, out, _ = sh(engine, "wget -q -O - http://127.0.0.1:80/", network=f"container:{cid}")
    assert (code, out) == (0, "hello from the container")
    with pytest.raises(InvalidArgument, match="port publishing"):
        engine.create(RunOptions(image="busybox", network=f"container:{cid}", publish=["80"]))


def test_etc_files_dns_and_add_host(engine: Engine) -> None:
    code, out, _ = sh(engine, "cat /etc/hosts /etc/resolv.conf; hostname",
                      add_hosts=["db.example:10.1.2.3"], dns=["10.0.0.53"],
                      dns_search=["corp.example"], hostname="myhost", name="named")
    assert code == 0
    lines = out.splitlines()
    assert "10.1.2.3\tdb.example" in lines
    assert any(line.endswith("\tmyhost named") for line in lines)
    assert "nameserver 10.0.0.53" in lines and "search corp.example" in lines
    assert lines[-1] == "myhost"


def test_connect_and_disconnect_a_running_container(engine: Engine) -> None:
    engine.network_create("second", subnet="10.89.7.0/24")
    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"]))
    engine.network_connect("second", c.id, aliases=["extra"])
    state = engine.get(c.id).state.network
    assert state.networks["second"].ip == "10.89.7.2"
    code, out, _ = sh(engine, "ping -c1 -W2 extra >/dev/null && echo ok", network="second")
    assert out.strip() == "ok"
    engine.network_disconnect("second", c.id)
    assert "second" not in engine.get(c.id).state.network.networks
    assert engine.networks.get("second").endpoints == {}
    with open(f"/proc/{engine.get(c.id).state.pid}/net/dev") as f:
        assert [line.split(":")[0].strip() for line in f.readlines()[2:]] == ["lo", "eth0"]


def test_address_released_on_stop_and_bad_input(engine: Engine) -> None:
    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"]))
    first = engine.get(c.id).state.network.networks["bridge"].ip
    engine.stop(c.id, timeout=0)
    assert engine.networks.get("bridge").endpoints == {}
    engine.start(c.id)
    assert engine.get(c.id).state.network.networks["bridge"].ip == first
    with pytest.raises(NotFound, match="network nosuch not found"):
        engine.create(RunOptions(image="busybox", network="nosuch"))
    with pytest.raises(InvalidArgument, match="within 1-65535"):
        engine.create(RunOptions(image="busybox", publish=["70000:80"]))
    with pytest.raises(InvalidArgument, match="--network none"):
        engine.create(RunOptions(image="busybox", network="none", publish=["80"]))
    with pytest.raises(Conflict, match="overlaps"):
        engine.network_create("a", subnet="10.89.3.0/24")
        engine.network_create("b", subnet="10.89.3.128/25")


def test_publish_all_uses_exposed_ports(engine: Engine, tmp_path: Path) -> None:
    from tuibox.engine.images.hostrootfs import busybox_rootfs

    rootfs = busybox_rootfs(tmp_path / "rootfs")
    engine.images.import_image(rootfs, ref="exposing:1", changes=["EXPOSE 80/tcp 53/udp"])
    c = engine.run(RunOptions(image="exposing:1", command=["sleep", "1d"], publish_all=True))
    ports = {p.key: p.host_port for p in engine.ports(c.id)}
    assert set(ports) == {"53/udp", "80/tcp"} and all(ports.values())


def test_rules_live_in_our_own_table_and_go_with_the_supervisor(
        root: Path, engine: Engine) -> None:
    table = table_name(root)
    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], publish=["80"]))
    listing = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                             text=True)
    assert listing.returncode == 0 and "dnat to" in listing.stdout
    engine.remove(c.id, force=True)
    listing = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                             text=True)
    assert "dnat to" not in listing.stdout  # its port went with it; the bridge idles
    engine.shutdown()
    listing = subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                             text=True)
    assert listing.returncode != 0  # gone with the supervisor


def test_supervisor_crash_then_stop_still_tears_down(engine: Engine) -> None:
    from tests.test_supervisor import kill_supervisor

    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], publish=["80"]))
    veth = engine.networks.get("bridge").endpoints[c.id].host_ifname
    assert veth in links()
    kill_supervisor(engine)
    engine.stop(c.id, timeout=0)  # a new supervisor adopts it, then stops it
    assert veth not in links()
    assert engine.networks.get("bridge").endpoints == {}


def test_cli_network_verbs_port_and_ps(cli, engine: Engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = cli("network", "create", "--subnet", "10.89.9.0/24", "clinet").stdout.strip()
    assert len(out) == 64
    ls = cli("network", "ls").stdout
    assert "clinet" in ls and "bridge" in ls and "none" in ls
    assert cli("network", "inspect", "-f", "{{.Name}} {{json .IPAM.Config}}", "clinet").stdout \
        == 'clinet [{"Subnet":"10.89.9.0/24","Gateway":"10.89.9.1"}]\n'
    port = free_port()
    cli("run", "-d", "--name", "pweb", "--network", "clinet", "-p", f"{port}:80", "busybox",
        "sleep", "1d")
    assert cli("port", "pweb").stdout == f"80/tcp -> 0.0.0.0:{port}\n"
    assert cli("port", "pweb", "80").stdout == f"0.0.0.0:{port}\n"
    assert f"0.0.0.0:{port}->80/tcp" in cli("ps").stdout
    rm = cli("network", "rm", "clinet", check=False)
    assert rm.returncode != 0 and "in use" in rm.stderr
    bad = cli("run", "--rm", "-p", "abc:80", "busybox", "true", check=False)
    assert bad.returncode == 125 and "not a number" in bad.stderr


def test_idle_bridge_is_reused_then_reaped(root: Path, busybox_archives: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUIBOX_IDLE_BRIDGE_SECONDS", "1")  # the supervisor inherits it
    engine = Engine(root)
    engine.images.load(busybox_archives[0])
    try:
        first = engine.run(RunOptions(image="busybox", command=["true"]))
        engine.wait(first.id)
        bridge = engine.networks.get("bridge").bridge
        index = (Path("/sys/class/net") / bridge / "ifindex").read_text()
        second = engine.run(RunOptions(image="busybox", command=["true"]))
        engine.wait(second.id)
        assert (Path("/sys/class/net") / bridge / "ifindex").read_text() == index  # reused
        deadline = time.monotonic() + 10
        while bridge in links() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bridge not in links()  # reaped while the supervisor runs on
        assert engine.supervisor.running()
        listing = subprocess.run(["nft", "list", "table", "ip", table_name(root)],
                                 capture_output=True, text=True)
        assert listing.returncode != 0
    finally:
        for c in engine.list(all=True):
            engine.remove(c.id, force=True)
        engine.shutdown(force=True)


def test_a_container_reaches_its_own_published_port_through_the_host(
        engine: Engine, tmp_path: Path) -> None:
    """Hairpin: out to the gateway, DNAT'd back in by the port it left from."""
    port = free_port()
    cid = web(engine, tmp_path, publish=[f"{port}:80"])
    gateway = engine.get(cid).state.network.networks["bridge"].gateway
    assert http_get(f"http://127.0.0.1:{port}/") == "hello from the container"  # it is up
    plan_code, out, _ = sh(engine, f"timeout 5 wget -q -O - http://{gateway}:{port}/; exit $?",
                           network=f"container:{cid}")
    assert (plan_code, out) == (0, "hello from the container")


def test_a_container_failing_at_start_gives_its_network_back(engine: Engine) -> None:
    port = free_port()
    before = links()
    with pytest.raises(SetupError, match="user"):
        engine.run(RunOptions(image="busybox", command=["true"], user="nosuchuser",
                              publish=[f"{port}:80"]))
    assert not [name for name in links() - before if name.startswith("veth")]
    assert engine.networks.get("bridge").endpoints == {}
    with socket.socket() as s:
        s.bind(("0.0.0.0", port))  # the host port is free again
    ok = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], publish=[f"{port}:80"]))
    assert engine.get(ok.id).state.network.networks["bridge"].ip.endswith(".2")


def test_resolv_conf_follows_docker_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback resolvers are dropped; behind systemd-resolved's stub the real upstream
    servers are used; with none left, Docker's public fallback; --dns replaces."""
    from datetime import UTC, datetime

    from tuibox.engine.models import ContainerConfig, ProcessSpec
    from tuibox.engine.network import etcfiles

    host, upstream = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    monkeypatch.setattr(etcfiles, "HOST_RESOLV", host)
    monkeypatch.setattr(etcfiles, "RESOLVED_UPSTREAM", upstream)
    config = ContainerConfig(id="c", name="n", created=datetime.now(UTC), image="i",
                             image_id="i", process=ProcessSpec(args=["sh"], env=[]),
                             hostname="h")
    host.write_text("nameserver 127.0.0.53\nsearch corp.example\noptions edns0\n")
    upstream.write_text("nameserver 10.1.1.1\nnameserver 10.1.1.2\n")
    assert etcfiles.resolv_conf(config) == ("nameserver 10.1.1.1\nnameserver 10.1.1.2\n"
                                            "search corp.example\noptions edns0\n")
    upstream.unlink()
    assert etcfiles.resolv_conf(config).startswith("nameserver 8.8.8.8\nnameserver 8.8.4.4\n")
    host.write_text("nameserver 127.0.0.1\nnameserver 10.9.9.9\n")
    assert etcfiles.resolv_conf(config) == "nameserver 10.9.9.9\n"
    config.dns = ["10.0.0.53"]
    assert etcfiles.resolv_conf(config) == "nameserver 10.0.0.53\n"
    config.dns, config.network_mode = [], "host"
    assert etcfiles.resolv_conf(config) == host.read_text()  # the host's, as it is


def test_idle_container_on_the_bridge_has_no_traffic(engine: Engine) -> None:
    """IPv4 only, as Docker's default: no IPv6 link-local chatter (router solicitations,
    MLD) counted as traffic, on either end of the veth."""
    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"]))
    pid = engine.get(c.id).state.pid
    assert Path(f"/proc/{pid}/net/if_inet6").read_text().split()[-1] == "lo"  # ::1 only
    veth = engine.networks.get("bridge").endpoints[c.id].host_ifname
    assert Path(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6").read_text().strip() == "1"
    time.sleep(1)
    first = engine.stats([c.id])[c.id]
    time.sleep(4)  # IPv6 would have solicited a router by now
    later = engine.stats([c.id])[c.id]
    # (the host's own IGMP reports when the port joined may have arrived: a few bytes once)
    assert (later.net_rx, later.net_tx) == (first.net_rx, first.net_tx)
    assert later.net_tx == 0 and later.net_rx < 512


def test_fixed_ip_on_a_user_network(engine: Engine) -> None:
    engine.network_create("fixed", subnet="10.89.5.0/24")
    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], network="fixed",
                              ip="10.89.5.50"))
    assert engine.get(c.id).state.network.networks["fixed"].ip == "10.89.5.50"
    code, out, _ = sh(engine, "ip -4 addr show eth0", network="fixed")  # next one: lowest free
    assert "10.89.5.2/24" in out
    with pytest.raises(SetupError, match=r"10\.89\.5\.50 is already in use"):
        engine.run(RunOptions(image="busybox", command=["true"], network="fixed",
                              ip="10.89.5.50"))
    with pytest.raises(InvalidArgument, match="user defined networks only"):
        engine.create(RunOptions(image="busybox", ip="10.87.0.9"))
    with pytest.raises(InvalidArgument, match="not in network fixed"):
        engine.create(RunOptions(image="busybox", network="fixed", ip="10.1.2.3"))
