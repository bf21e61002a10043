"""Container networking: bridge networks, IPAM, veth pairs, NAT and published ports.

``models`` and ``store`` (records and IP allocation) are used by the engine in any
process; ``netlink``, ``nft`` and ``manager`` (the kernel side) only by the supervisor,
which sets a container's network up between fork and exec and tears it down on exit.
"""
