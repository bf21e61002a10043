"""The benchmark cases, in the order a full run measures them.

Adding a case = one module (``NAME``, ``TITLE``, ``NEEDS``, ``run(bench) -> CaseResult``,
see ``common.py``) + one line here.  ``stats`` comes before ``scale`` so the scale case
finds the idle containers the stats case started; ``pull`` is last because it drops the
peers' loaded images while it runs.
"""

from __future__ import annotations

from types import ModuleType

import case_logs
import case_memory
import case_network
import case_pull
import case_scale
import case_start
import case_stats

CASES: list[ModuleType] = [
    case_start,
    case_memory,
    case_logs,
    case_stats,
    case_scale,
    case_network,
    case_pull,
]
