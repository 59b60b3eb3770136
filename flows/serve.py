"""``make serve``: a Prefect server on 127.0.0.1, the process work pool, every deployment, a worker.

The integration test drives the same functions, so what a person gets from ``make serve`` is what
is tested. Run: ``.venv/bin/python -m flows.serve [--port 4200]``; the UI is at http://127.0.0.1:PORT.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POOL = "spiritflow-process"
BIN = Path(sys.executable).parent


def prefect_env(
    port: int, home: str | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for the server, the CLI calls and the worker (all on one API URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "SPIRITFLOW_REPO": str(ROOT),
            "DASK_LOGGING__DISTRIBUTED": "warning",
        }
    )
    if home:
        env["PREFECT_HOME"] = home
    env.update(extra or {})
    return env


def start_server(env: Mapping[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else None
    port = env["PREFECT_SERVER_API_PORT"]
    return subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", port],
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )


def wait_healthy(
    api_url: str, timeout_s: float = 120.0, server: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"prefect server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {api_url} not healthy after {timeout_s:.0f} s")


def prefect(
    args: list[str], env: Mapping[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """One ``prefect`` CLI call from the repository root (no prompts)."""
    return subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def deploy_all(env: Mapping[str, str]) -> None:
    """Create the process work pool (if missing) and apply every deployment of prefect.yaml."""
    if prefect(["work-pool", "inspect", POOL], env, check=False).returncode != 0:
        prefect(["work-pool", "create", POOL, "--type", "process"], env)
    prefect(["deploy", "--all"], env)


def start_worker(env: Mapping[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    out = log.open("ab") if log else None
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
        env=dict(env),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Terminate a process group (the server and worker start children)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, 15)
            process.wait(timeout=timeout_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, 9)
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make serve",
        description="Start a Prefect server on 127.0.0.1, deploy prefect.yaml to the spiritflow-process "
        "pool and run a worker until Ctrl-C. UI at http://127.0.0.1:PORT.",
    )
    parser.add_argument("--port", type=int, default=4200, help="server port (default: 4200)")
    args = parser.parse_args(argv)
    env = prefect_env(
        args.port, extra={"SPIRITFLOW_WORKERS": os.environ.get("SPIRITFLOW_WORKERS", "2")}
    )
    if "PREFECT_HOME" in os.environ:
        env["PREFECT_HOME"] = os.environ["PREFECT_HOME"]
    server = start_server(env)
    try:
        wait_healthy(env["PREFECT_API_URL"], server=server)
        deploy_all(env)
        print(f"server: http://127.0.0.1:{args.port}  (deployments applied; worker on pool {POOL})")
        print(
            "trigger one: .venv/bin/prefect deployment run ingest/ingest-demo  — Ctrl-C stops all"
        )
        worker = start_worker(env)
        try:
            worker.wait()
        except KeyboardInterrupt:
            pass
        finally:
            stop(worker)
    finally:
        stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
