"""cgroups: one driver protocol, a v1 and a v2 driver, chosen by probing the host."""

from .driver import CgroupDriver, detect_driver

__all__ = ["CgroupDriver", "detect_driver"]
