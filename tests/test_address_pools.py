"""Subnets for bridge networks come from pools as large as Docker's, configurable per root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuibox.engine.network.store import BUILTIN_POOLS

Cli = Any


def test_default_pools_are_as_large_as_dockers() -> None:
    assert "172.17.0.0/16" in BUILTIN_POOLS and "192.168.240.0/20" in BUILTIN_POOLS
    assert len(BUILTIN_POOLS) >= 7 + 15 + 16  # eight state roots no longer exhaust it


def test_daemon_json_pools_and_a_clear_message_when_exhausted(cli: Cli, root: Path) -> None:
    (root / "daemon.json").write_text(json.dumps(
        {"default-address-pools": [{"base": "10.202.7.0/24", "size": 25}]}))
    cli("network", "create", "pool-a")
    cli("network", "create", "pool-b")
    subnets = {json.loads(cli("network", "inspect", n).stdout)[0]["IPAM"]["Config"][0]["Subnet"]
               for n in ("pool-a", "pool-b")}
    assert subnets == {"10.202.7.0/25", "10.202.7.128/25"}
    proc = cli("network", "create", "pool-c", check=False)
    assert proc.returncode == 125
    assert "no free address range left" in proc.stderr
    assert f'"default-address-pools" in {root}/daemon.json' in proc.stderr
    assert proc.stderr.count("\n") == 1
    cli("network", "rm", "pool-a", "pool-b")
