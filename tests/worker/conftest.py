from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "worker",
    max_examples=int(os.environ.get("PARHELIA_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("worker")
