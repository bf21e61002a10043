"""Pydantic records: everything that touches disk or crosses a process boundary.

Field names follow Docker's JSON where a record is shown to users (``inspect``), and
snake_case where it is private to tuibox.  Every on-disk record has ``schema_version``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .cgroups.resources import Resources

ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)

SCHEMA_VERSION = 1


class Record(BaseModel):
    """Base of all records: unknown keys are ignored so old engines read newer records."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


# ---------------------------------------------------------------------------------------
# images


class ImageConfig(Record):
    """The runtime part of an OCI image config (``config.config``), Docker's key names."""

    User: str = ""
    Env: list[str] = Field(default_factory=list)
    Entrypoint: list[str] | None = None
    Cmd: list[str] | None = None
    WorkingDir: str = ""
    Labels: dict[str, str] | None = None
    StopSignal: str = ""
    ExposedPorts: dict[str, dict[str, object]] | None = None
    Volumes: dict[str, dict[str, object]] | None = None


class ImageRecord(Record):
    """One image in the local store (``images/images/<id-hex>.json``)."""

    schema_version: int = SCHEMA_VERSION
    id: str  # "sha256:<hex>" of the config blob
    repo_tags: list[str] = Field(default_factory=list)  # "busybox:latest" (familiar form)
    repo_digests: list[str] = Field(default_factory=list)
    created: datetime = ZERO_TIME
    architecture: str = "amd64"
    os: str = "linux"
    config: ImageConfig = Field(default_factory=ImageConfig)
    diff_ids: list[str] = Field(default_factory=list)  # bottom to top
    chain_ids: list[str] = Field(default_factory=list)  # bottom to top; layer dir keys
    size: int = 0  # unpacked bytes, as `docker images` shows


# ---------------------------------------------------------------------------------------
# containers


class RestartPolicy(Record):
    name: Literal["no", "on-failure", "always", "unless-stopped"] = "no"
    maximum_retry_count: int = 0


class LogOptions(Record):
    """json-file options; sizes in bytes, decimal units like Docker's ``10m``."""

    max_size: int = -1
    max_file: int = 1


class Ulimit(Record):
    name: str  # "nofile"
    soft: int
    hard: int


class Mount(Record):
    """A bind mount, a volume or a tmpfs in a container (``-v``, ``--mount``, ``--tmpfs``)."""

    type: Literal["bind", "volume", "tmpfs"]
    source: str = ""  # host path (bind) or volume name (volume)
    target: str
    read_only: bool = False
    options: str = ""  # tmpfs mount options, e.g. "size=64m,mode=1777"
    anonymous: bool = False  # a volume made for this container only (``rm -v`` removes it)


class VolumeRecord(Record):
    """A named volume (``volumes/<name>/volume.json``); its data is ``volumes/<name>/_data``."""

    schema_version: int = SCHEMA_VERSION
    name: str
    created: datetime
    labels: dict[str, str] = Field(default_factory=dict)
    anonymous: bool = False


# ---------------------------------------------------------------------------------------
# networking (the network records themselves are in network/models.py)

Proto = Literal["tcp", "udp"]


class PortSpec(Record):
    """One ``-p`` mapping as asked; ``host_port`` 0 means any free port."""

    container_port: int
    proto: Proto = "tcp"
    host_ip: str = ""  # "" = every host address (0.0.0.0)
    host_port: int = 0

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"


class PortBinding(Record):
    """A published port as it is while the container runs (host port resolved)."""

    container_port: int
    proto: Proto = "tcp"
    host_ip: str = "0.0.0.0"
    host_port: int

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    def __str__(self) -> str:
        return f"{self.host_ip}:{self.host_port}->{self.container_port}/{self.proto}"


class ContainerNetwork(Record):
    """A container's view of one network it is attached to (``inspect`` → Networks)."""

    network_id: str
    ip: str
    prefix_len: int
    gateway: str
    mac: str
    aliases: list[str] = Field(default_factory=list)


class NetworkSettings(Record):
    """Runtime network state of a container, kept in its ``state.json`` while it runs."""

    networks: dict[str, ContainerNetwork] = Field(default_factory=dict)
    ports: list[PortBinding] = Field(default_factory=list)


class DeviceMapping(Record):
    """``--device HOST[:CONTAINER[:rwm]]``: a host device node made inside the container."""

    path_on_host: str
    path_in_container: str
    permissions: str = "rwm"


class IdRange(Record):
    """``--userns=auto``: container ids 0..size-1 are host ids start..start+size-1."""

    start: int
    size: int


class SecurityConfig(Record):
    """How a container is confined: capabilities, seccomp, devices, user namespace.

    Everything is resolved at ``create`` (names checked, profiles read), so a start never
    fails on a flag; what the host offers (device numbers) is looked up at each start."""

    privileged: bool = False
    cap_add: list[str] = Field(default_factory=list)  # "CAP_SYS_ADMIN" form, or "ALL"
    cap_drop: list[str] = Field(default_factory=list)
    no_new_privs: bool = False  # Docker's default: off; --security-opt no-new-privileges
    seccomp: str = "default"  # "default", "unconfined", or a Docker JSON profile's text
    devices: list[DeviceMapping] = Field(default_factory=list)
    device_cgroup_rules: list[str] = Field(default_factory=list)  # "c 1:3 rwm"
    userns: Literal["host", "auto"] = "host"
    id_range: IdRange | None = None  # with userns "auto": the host ids allocated at create
    masked_paths: bool = True  # False with --security-opt systempaths=unconfined


class ProcessSpec(Record):
    """What runs as PID 1, resolved from the image config and the user's flags."""

    args: list[str]
    env: list[str]
    cwd: str = "/"
    user: str = ""  # as given; resolved inside the container's /etc/passwd at start
    tty: bool = False
    open_stdin: bool = False


class ContainerConfig(Record):
    """What the user asked for; written once at create (``containers/<id>/config.json``)."""

    schema_version: int = SCHEMA_VERSION
    id: str
    name: str
    created: datetime
    image: str  # the reference the user gave
    image_id: str
    process: ProcessSpec
    entrypoint: list[str] | None = None  # user --entrypoint, for inspect
    cmd: list[str] | None = None  # user command, for inspect
    hostname: str
    labels: dict[str, str] = Field(default_factory=dict)
    restart_policy: RestartPolicy = Field(default_factory=RestartPolicy)
    auto_remove: bool = False
    stop_signal: str = "SIGTERM"
    stop_timeout: int | None = None
    network_mode: str = "bridge"  # bridge, none, host, container:<id>, or a network's name
    networks: list[str] = Field(default_factory=list)  # bridge networks, in attach order
    ports: list[PortSpec] = Field(default_factory=list)  # -p / -P
    network_aliases: list[str] = Field(default_factory=list)
    ip: str = ""  # --ip: a fixed address on the first network (user networks only)
    dns: list[str] = Field(default_factory=list)
    dns_search: list[str] = Field(default_factory=list)
    dns_options: list[str] = Field(default_factory=list)
    extra_hosts: list[str] = Field(default_factory=list)  # "name:ip"
    log_options: LogOptions = Field(default_factory=LogOptions)
    ulimits: list[Ulimit] = Field(default_factory=list)
    layer_dirs: list[str] = Field(default_factory=list)  # bottom to top
    read_only: bool = False
    resources: Resources = Field(default_factory=Resources)
    mounts: list[Mount] = Field(default_factory=list)
    seccomp: bool = True  # False with --security-opt seccomp=unconfined (kept for old records)
    security: SecurityConfig = Field(default_factory=SecurityConfig)

    @model_validator(mode="after")
    def _old_unconfined(self) -> ContainerConfig:
        # Records from before ``security`` existed said "unconfined" with ``seccomp: false``.
        if not self.seccomp and self.security.seccomp == "default":
            self.security.seccomp = "unconfined"
        return self


Status = Literal["created", "running", "paused", "restarting", "removing", "exited", "dead"]


class LogLoss(Record):
    """Output the json-file log could not keep (a full disk: ``logs/dropped.py``), over all
    runs of the container; ``inspect`` shows it as ``State.LogLoss``."""

    lines: int = 0
    bytes: int = 0
    error: str = ""  # the last reason, e.g. "No space left on device"
    last_at: datetime = ZERO_TIME  # when output was last dropped


class OutputGap(Record):
    """A stretch of a container's output nobody read: its keeper and supervisor were killed
    together, so its pipes had no reader and every write failed (``EPIPE``; ``SIGPIPE`` for
    any writer but PID 1, which the kernel spares) until a supervisor took them back."""

    since: datetime  # the last output kept before (the log's last write, or the start)
    until: datetime = ZERO_TIME  # taken back then; zero: never (a TTY, or no longer held)

    def seconds(self, now: datetime) -> float:
        """How long nobody read it (up to ``now`` if it was never taken back)."""
        end = self.until if self.until != ZERO_TIME else now
        return max(0.0, (end - self.since).total_seconds())


class ContainerState(Record):
    """Mutable runtime state (``containers/<id>/state.json``); the supervisor owns it."""

    schema_version: int = SCHEMA_VERSION
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    removing: bool = False
    pid: int = 0
    pid_start: int = 0  # /proc/<pid>/stat starttime: tells a reused pid from ours
    boot_id: str = ""  # the boot pid/pid_start belong to: none of them survive a reboot
    exit_code: int = 0
    error: str = ""
    started_at: datetime = ZERO_TIME
    finished_at: datetime = ZERO_TIME
    restart_count: int = 0
    manually_stopped: bool = False
    cgroup: str = ""  # relative cgroup path, e.g. "tuibox/<id>"
    network: NetworkSettings = Field(default_factory=NetworkSettings)  # while running
    # Inodes of this run's stdout/stderr pipes: a supervisor that lost them (keeper killed
    # too) finds them again in the container's own fd tables (supervisor/reclaim.py).
    stdio_pipes: dict[str, int] = Field(default_factory=dict)
    output_lost: list[OutputGap] = Field(default_factory=list)  # this run's gaps
    log_loss: LogLoss = Field(default_factory=LogLoss)

    @property
    def status(self) -> Status:
        """Docker's derivation (moby ``state.go``)."""
        if self.running:
            if self.paused:
                return "paused"
            if self.restarting:
                return "restarting"
            return "running"
        if self.removing:
            return "removing"
        if self.dead:
            return "dead"
        if self.started_at == ZERO_TIME:
            return "created"
        return "exited"


class Container(BaseModel):
    """A container as listed: its config and its state, read together."""

    config: ContainerConfig
    state: ContainerState

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name


class Event(Record):
    """One line of ``events.jsonl``."""

    time: datetime
    type: Literal["container", "image", "network"] = "container"
    action: str  # create start die stop kill restart destroy oom pause unpause …
    id: str
    name: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)


class RunOptions(Record):
    """A ``create``/``run`` request as the CLI and the dashboard's Run dialog build it."""

    image: str
    command: list[str] = Field(default_factory=list)
    entrypoint: list[str] | None = None  # [""] clears the image's entrypoint
    name: str | None = None
    env: list[str] = Field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    hostname: str | None = None
    restart: str = "no"
    stop_signal: str | None = None
    stop_timeout: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    auto_remove: bool = False
    network: str = "bridge"
    publish: list[str] = Field(default_factory=list)  # -p [ip:][hostPort:]containerPort[/proto]
    publish_all: bool = False  # -P
    network_aliases: list[str] = Field(default_factory=list)
    ip: str | None = None  # --ip
    dns: list[str] = Field(default_factory=list)
    dns_search: list[str] = Field(default_factory=list)
    dns_options: list[str] = Field(default_factory=list)
    add_hosts: list[str] = Field(default_factory=list)  # --add-host name:ip
    log_opts: dict[str, str] = Field(default_factory=dict)
    ulimits: list[str] = Field(default_factory=list)
    read_only: bool = False
    # resource limits, docker's flags with values already in base units
    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes, memory + swap; -1 = unlimited
    memory_reservation: int | None = None
    kernel_memory: int | None = None  # refused: no kernel supports it any more
    cpus: float | None = None
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    pids_limit: int | None = None  # None = the engine's default; 0 or -1 = unlimited
    blkio_weight: int | None = None
    device_read_bps: list[str] = Field(default_factory=list)  # "/dev/sda:10mb"
    device_write_bps: list[str] = Field(default_factory=list)
    device_read_iops: list[str] = Field(default_factory=list)  # "/dev/sda:1000"
    device_write_iops: list[str] = Field(default_factory=list)
    oom_kill_disable: bool = False
    pull: Literal["missing", "always", "never"] = "missing"  # run --pull
    tty: bool = False  # -t
    interactive: bool = False  # -i
    security_opt: list[str] = Field(default_factory=list)  # seccomp=unconfined …
    volumes: list[str] = Field(default_factory=list)  # -v host:ctr[:ro], -v name:ctr, -v /ctr
    mounts: list[str] = Field(default_factory=list)  # --mount type=…,source=…,target=…
    tmpfs: list[str] = Field(default_factory=list)  # --tmpfs /run[:options]
    privileged: bool = False
    cap_add: list[str] = Field(default_factory=list)
    cap_drop: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)  # --device HOST[:CONTAINER[:rwm]]
    device_cgroup_rules: list[str] = Field(default_factory=list)  # --device-cgroup-rule
    userns: str | None = None  # --userns: "" / "host" / "auto" (None: the root's default)


class StatsSample(Record):
    """One stats reading of one container (``docker stats`` semantics; 100 % = one core)."""

    id: str
    name: str
    time_ns: int
    cpu_percent: float = 0.0
    cpu_usage_ns: int = 0
    cpu_throttled_periods: int = 0
    cpu_throttled_ns: int = 0
    memory_usage: int = 0  # usage minus inactive file cache
    memory_limit: int = 0  # the limit, or host memory when unlimited
    memory_percent: float = 0.0
    oom_kills: int = 0
    pids: int = 0
    pids_limit: int = 0  # 0 = unlimited
    block_read: int = 0
    block_write: int = 0
    net_rx: int = 0
    net_tx: int = 0
    psi_cpu: float | None = None  # "some avg10" where the kernel offers PSI
    psi_memory: float | None = None
    psi_io: float | None = None


class ProcessInfo(Record):
    """One process of a container, for ``top`` and the dashboard's Processes tab."""

    pid: int  # host pid
    ppid: int
    user: str
    state: str
    cpu_seconds: float
    rss: int
    started: float  # seconds since boot
    command: str
