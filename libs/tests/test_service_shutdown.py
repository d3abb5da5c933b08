"""A service process stops cleanly on SIGTERM (what Kubernetes and compose send) and SIGINT:
the HTTP server first, then the relay, the consumers and the periodic jobs; the
connections close, and the process exits 0, well inside the 30 s grace period the deploy
gives it. (That a request in flight is answered and its events published before the
relay stops: tests/faults/test_service_process_kills.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from propdesk.devstack.nats import NatsServer
from propdesk.devstack.ports import free_port
from propdesk.settings import Settings
from propdesk.testing.waiting import eventually


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_service_stops_cleanly_on_a_signal(
    settings: Settings, tmp_path: Path, sig: signal.Signals
) -> None:
    nats = NatsServer(tmp_path, free_port(), server_name=f"shutdown-{uuid4().hex[:8]}")
    await asyncio.to_thread(nats.start)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROPDESK_APP_DATABASE_URL"}
    env.update(
        PROPDESK_DATABASE_URL=settings.database_url,
        PROPDESK_NATS_URL=nats.url,
        PROPDESK_REDIS_URL=settings.redis_url,
        PROPDESK_LOG_JSON="false",
    )
    log_path = tmp_path / "service.log"
    try:
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "propdesk.service.runner",
                "intake",
                "--port",
                str(port),
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:

                async def ready() -> bool:
                    assert proc.returncode is None, log_path.read_text()
                    try:
                        async with httpx.AsyncClient(timeout=1) as client:
                            r = await client.get(f"http://127.0.0.1:{port}/readyz")
                            return r.status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(ready, "intake ready", within=30)
                proc.send_signal(sig)
                returncode = await asyncio.wait_for(proc.wait(), 20)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    finally:
        await asyncio.to_thread(nats.stop)
    output = log_path.read_text(errors="replace")
    assert returncode == 0, output[-3000:]
    assert "service intake stopped" in output, output[-3000:]
    assert "shutdown:" not in output and "Traceback" not in output, output[-3000:]
