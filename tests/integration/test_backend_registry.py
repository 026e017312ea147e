"""The backends come from one registry: ``status`` and ``doctor`` show each one's
``available()`` and its reason, and a task on an unavailable backend fails with it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.harness import Harness


def test_status_doctor_and_dispatch_give_the_same_reason(harness_factory,
                                                         tmp_path: Path) -> None:
    # No Modal credentials (an empty home): the modal backend cannot launch, and says why.
    harness: Harness = harness_factory(HOME=str(tmp_path), MODAL_TOKEN_ID="",
                                       MODAL_TOKEN_SECRET="")
    status = harness.json("status")
    backends = {b["name"]: b for b in status["backends"]}
    assert backends["local"]["available"] and backends["local"]["detail"]
    modal = backends["modal"]
    assert not modal["available"] and modal["detail"]
    doctor = json.loads(harness.run("doctor", "--json").stdout)
    checks = {c["name"]: c for c in doctor["checks"]}
    assert checks["backend local"]["status"] == "ok"
    assert checks["backend modal"]["status"] == "warn"
    assert checks["backend modal"]["detail"] == modal["detail"]
    # task create says so at once (E400: no Modal token), and creates nothing
    refused = harness.run("task", "create", "hello", "--no-workspace", "--backend", "modal")
    assert refused.returncode == 1 and "E400" in refused.stderr
    assert modal["detail"] in " ".join(refused.stderr.split())
    assert harness.json("task", "list")["tasks"] == []
