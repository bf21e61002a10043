"""Network records: what a network is, who is on it, and which host ports are published."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ..models import SCHEMA_VERSION, PortBinding, Record


class Endpoint(Record):
    """One container's interface on one network, while it runs."""

    container_id: str
    container_name: str
    hostname: str
    ip: str
    prefix_len: int
    gateway: str
    mac: str
    host_ifname: str  # the host side of the veth pair
    ifname: str = "eth0"  # inside the container
    aliases: list[str] = Field(default_factory=list)
    ports: list[PortBinding] = Field(default_factory=list)  # published, on the first network


class NetworkRecord(Record):
    """``networks/<name>.json``: one bridge network and the addresses handed out on it."""

    schema_version: int = SCHEMA_VERSION
    id: str
    name: str
    driver: Literal["bridge"] = "bridge"
    created: datetime
    subnet: str = ""  # chosen when first used for the built-in "bridge" unless configured
    gateway: str = ""
    bridge: str  # the host bridge device
    builtin: bool = False  # the default "bridge" network
    subnet_fixed: bool = True  # False: the subnet may move off a range the host now uses
    internal: bool = False  # no route out (no masquerade)
    mtu: int = 0  # 0 = the host's default-route MTU
    labels: dict[str, str] = Field(default_factory=dict)
    options: dict[str, str] = Field(default_factory=dict)
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)  # by container id
