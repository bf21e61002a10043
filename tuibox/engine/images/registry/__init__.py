"""Registries: pull, push, login (distribution-spec v2 over httpx).

The package imports nothing by itself: httpx costs ~90 ms to import, and the CLI and
``create`` should pay that only when they talk to a registry.  Entry points:
``pull.pull``, ``push.push``, ``login.login``/``logout``, ``policy.ensure_image``
(``run --pull``); progress arrives as ``progress.ProgressEvent`` values.
"""
