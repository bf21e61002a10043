"""Hand-made Ethernet frames, sent from inside a network namespace the way an attacker in
a container with CAP_NET_RAW (Docker's default) sends them: through an AF_PACKET socket,
so the container's own routing and martian checks never see them.

Run in the container's namespace: ``nsenter -t PID -n python -m tests.rawpacket VERB …``;
it prints one JSON object.

- ``tcp-connect IFACE DST_MAC SRC_IP DST_IP DPORT SECONDS GATEWAY``: a datagram to the
  gateway through the namespace's own stack first (so the host has our MAC, as it has for
  any container that talks: it answers a forged source's ARP never), then SYNs (resent
  every 0.3 s) until a SYN-ACK for them comes back, then the ACK that completes the
  handshake.
- ``udp IFACE DST_MAC SRC_IP DST_IP DPORT``: one datagram (its source may be forged).
"""

from __future__ import annotations

import json
import random
import select
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
SYN, ACK = 0x02, 0x10


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), random.getrandbits(16),
                         0x4000, 64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + payload


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto,
                                                                       length)


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int) -> bytes:
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0)
    check = _checksum(_pseudo(src, dst, 6, len(segment)) + segment)
    return ipv4(src, dst, 6, segment[:16] + struct.pack("!H", check) + segment[18:])


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    check = _checksum(_pseudo(src, dst, 17, len(datagram)) + datagram) or 0xFFFF
    return ipv4(src, dst, 17, datagram[:6] + struct.pack("!H", check) + datagram[8:])


class Wire:
    """An AF_PACKET socket on one interface: whole frames out, IPv4 packets in."""

    def __init__(self, ifname: str, dst_mac: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.bind((ifname, ETH_P_IP))
        own_mac = self.sock.getsockname()[4]
        self.header = bytes.fromhex(dst_mac.replace(":", "")) + own_mac + \
            struct.pack("!H", ETH_P_IP)

    def send(self, packet: bytes) -> None:
        self.sock.send(self.header + packet)

    def receive(self, timeout: float) -> bytes | None:
        if not select.select([self.sock], [], [], max(timeout, 0))[0]:
            return None
        return self.sock.recv(65536)[14:]


def tcp_connect(wire: Wire, src: str, dst: str, dport: int, seconds: float) -> dict[str, object]:
    sport, isn = random.randint(40000, 60000), random.getrandbits(32)
    deadline = time.monotonic() + seconds
    resend = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= resend:
            wire.send(tcp(src, dst, sport, dport, isn, 0, SYN))
            resend = time.monotonic() + 0.3
        packet = wire.receive(min(resend, deadline) - time.monotonic())
        if packet is None or packet[9] != 6 or packet[16:20] != socket.inet_aton(src):
            continue
        seg = packet[(packet[0] & 0xF) * 4:]
        their_port, our_port, seq, ack = struct.unpack("!HHII", seg[:12])
        if our_port == sport and seg[13] & (SYN | ACK) == SYN | ACK and ack == isn + 1:
            wire.send(tcp(src, dst, sport, dport, isn + 1, seq + 1, ACK))
            return {"synack": True, "from": f"{socket.inet_ntoa(packet[12:16])}:{their_port}"}
    return {"synack": False}


def main(argv: list[str]) -> None:
    verb, ifname, dst_mac, src, dst, dport = argv[:6]
    wire = Wire(ifname, dst_mac)
    if verb == "tcp-connect":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hello:
            hello.sendto(b"hello", (argv[7], 9))
        result = tcp_connect(wire, src, dst, int(dport), float(argv[6]))
    elif verb == "udp":
        wire.send(udp(src, dst, random.randint(40000, 60000), int(dport), b"forged"))
        result = {"sent": True}
    else:
        raise SystemExit(f"unknown verb {verb}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
