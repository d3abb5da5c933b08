"""The server processes the bench starts itself (so it owns their pids), and what /proc
says about them: resident memory and CPU time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ServerProcess:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_mib(self) -> float:
        return _status_kib(self.pid, "VmRSS") / 1024

    def peak_rss_mib(self) -> float:
        return _status_kib(self.pid, "VmHWM") / 1024

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


_STARTED: set[str] = set()  # names of the servers this run has started


def start_server(
    name: str, argv: list[str], port: int, env: dict[str, str], log_dir: Path
) -> ServerProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    # A replica (a name this run started before) gets a log of its own.
    log_path = log_dir / (f"{name}-{port}.log" if name in _STARTED else f"{name}.log")
    _STARTED.add(name)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(name, port, proc, log_path)
    wait_healthy(server)
    return server


def wait_healthy(server: ServerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{server.port}/healthz"
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.proc.poll() is not None:
                tail = server.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n{tail}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} not healthy on port {server.port} in {timeout:.0f} s")


def service_argv(name: str, port: int) -> list[str]:
    """The real service, as the devstack and production start it: API, outbox relay,
    consumers and periodic jobs in one process."""
    runner = Path(sysconfig.get_path("scripts")) / "propdesk-service"
    return [str(runner), name, "--port", str(port)]


def intake_argv(port: int) -> list[str]:
    return service_argv("intake", port)


def baseline_argv(port: int) -> list[str]:
    """One uvicorn worker, like the intake service's one process; no access log (the bare
    endpoint does nothing it need not do)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
