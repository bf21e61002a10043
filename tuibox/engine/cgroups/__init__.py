"""cgroups: one driver protocol, a v1 and a v2 driver, chosen by probing the host."""

from .driver import CgroupDriver, detect_driver
from .files import Counters
from .resources import Resources

__all__ = ["CgroupDriver", "Counters", "Resources", "detect_driver"]
