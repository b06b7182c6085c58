"""``policy-sidecar demo``: the whole stack on this machine, no Postgres or Redis."""

from __future__ import annotations

import signal
import socket
import tempfile
import threading
from importlib import resources
from pathlib import Path

from policy_sidecar.cli.launcher import LaunchError, free_port, start_stack

DEMO_KEY = "ps-demo-key-0123456789abcdef"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_text(url: str, usage_file: Path) -> str:
    allowed = (
        f"curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {DEMO_KEY}' "
        "-H 'Content-Type: application/json' "
        '-d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\''
    )
    denied = allowed.replace('"gpt-4o-mini"', '"gpt-4o"')
    return (
        f"\npolicy-sidecar demo is running: Envoy on {url}\n\n"
        f"Allowed (200):\n  {allowed}\n\n"
        f"Denied by the model allowlist (403):\n  {denied}\n\n"
        f"Usage records: {usage_file}\nPress Ctrl-C to stop.\n"
    )


def run_demo(*, port: int = 10000, workers: int = 2) -> int:
    if port == 0 or not _port_free(port):
        if port:
            print(f"port {port} is busy; using a free port instead")
        port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="policy-sidecar-demo-"))
    config = workdir / "standalone.yaml"
    config.write_text(
        resources.files("policy_sidecar").joinpath("examples/standalone.yaml").read_text()
    )
    print(f"starting the fake provider, {workers} sidecar worker(s) and Envoy (logs in {workdir})")
    try:
        stack = start_stack(workdir, config, workers=workers, listen_port=port)
    except LaunchError as exc:
        print(f"demo failed to start: {exc}")
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(demo_text(stack.url, stack.usage_file), flush=True)
    try:
        while not stop.wait(0.5):
            for proc in stack.processes.values():
                if proc.popen.poll() is not None:
                    print(f"{proc.name} exited unexpectedly:\n{proc.log_tail()}")
                    stop.set()
    finally:
        print("stopping...")
        stack.stop()
        print("stopped.")
    return 0
