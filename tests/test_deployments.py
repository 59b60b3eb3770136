"""prefect.yaml on a real `prefect server start`: deploy every deployment, run one through a worker."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import _free_port

from flows.serve import (
    deploy_all,
    prefect,
    prefect_env,
    start_server,
    start_worker,
    stop,
    wait_healthy,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """What `make serve` does, on a free port with its own PREFECT_HOME; logs kept for failures."""
    home = tmp_path_factory.mktemp("served")
    env = prefect_env(
        _free_port(),
        home=str(home / "prefect"),
        extra={"PREFECT_UI_ENABLED": "false", "SPIRITFLOW_WORKERS": "1"},
    )
    server = start_server(env, home / "server.log")
    worker = None
    try:
        wait_healthy(env["PREFECT_API_URL"], server=server)
        deploy_all(env)
        worker = start_worker(env, home / "worker.log")
        yield env, home
    finally:
        if worker is not None:
            stop(worker)
        stop(server)


def _api(env: dict[str, str], path: str, body: dict[str, Any] | None = None) -> Any:
    import urllib.request

    request = urllib.request.Request(
        env["PREFECT_API_URL"] + path,
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_every_deployment_is_applied_with_its_schedule(served: tuple[dict[str, str], Path]) -> None:
    env, _ = served
    deployments = {d["name"]: d for d in _api(env, "/deployments/filter")}
    assert set(deployments) == {
        "ingest-demo",
        "tokenize-nightly",
        "build-corpus-nightly",
        "stsp-eval",
    }
    assert all(d["work_pool_name"] == "spiritflow-process" for d in deployments.values())
    crons = {
        d["name"]: [s["schedule"]["cron"] for s in d["schedules"]] for d in deployments.values()
    }
    assert crons["tokenize-nightly"] == ["0 2 * * *"] and crons["build-corpus-nightly"] == [
        "0 4 * * *"
    ]


def test_a_triggered_deployment_runs_on_the_worker(
    served: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, home = served
    out = tmp_path / "deployed"
    params = {
        "params": {"source": "samples/demo.jsonl", "data_root": "tests/fixtures", "out": str(out)}
    }
    run = prefect(
        [
            "deployment",
            "run",
            "ingest/ingest-demo",
            "--params",
            json.dumps(params),
            "--watch",
            "--watch-timeout",
            "240",
        ],
        env,
        check=False,
    )
    logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in home.glob("*.log"))
    assert run.returncode == 0, run.stdout + run.stderr + logs
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout)
    assert flow_run_id, run.stdout
    state = _api(env, "/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id.group(1)]}}})[
        0
    ]["state"]
    assert state["type"] == "COMPLETED"
    manifest = json.loads((out / "recordings" / "_table.json").read_text())
    assert manifest["rows"] == 3  # the demo sample: three good recordings, the 60 ms clip rejected
    assert json.loads((out / "rejects" / "_table.json").read_text())["rows"] == 1
