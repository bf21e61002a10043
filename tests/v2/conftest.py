"""Only the guest collects this folder: tests/test_v2guest_suite.py names its files there
(explicit paths are collected even when ignored here), a run over ``tests`` skips it."""

from tests.v2 import IN_GUEST

collect_ignore_glob = [] if IN_GUEST else ["test_*.py"]
