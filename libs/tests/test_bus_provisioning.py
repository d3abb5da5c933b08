"""Who creates the stream and the durables (`bus_provisioning`), on the real NATS: in
development each service ensures what it uses; deployed, the operator provisions the bus
(`python -m propdesk.bus.cli provision`) and a service only checks, because its NATS user
may not change the stream or widen a durable (deploy/nats/auth.conf)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from uuid import uuid4

import pytest

from propdesk.bus.streams import (
    BusNotProvisioned,
    connect,
    ensure_consumer,
    ensure_stream,
    provision,
)
from propdesk.service.runner import load_spec
from propdesk.settings import SERVICE_NAMES, Settings


async def test_the_operator_provisions_and_a_service_only_checks(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    deployed = settings.model_copy(update={"bus_provisioning": "operator"})
    nc = await connect(settings, "provisioning-test")
    js = nc.jetstream()
    try:
        # Nothing there: a deployed service says what to do instead of creating it.
        missing = deployed.model_copy(update={"stream_name": f"MISSING{uuid4().hex[:8]}"})
        with pytest.raises(BusNotProvisioned, match=r"bus\.cli provision"):
            await ensure_stream(js, missing)
        durable = f"t-missing-{uuid4().hex[:8]}"
        await ensure_stream(js, settings)
        with pytest.raises(BusNotProvisioned, match=durable):
            await ensure_consumer(js, deployed, durable, ["pd.bustest.>"])
        with pytest.raises(Exception, match="not found"):
            await js.consumer_info(settings.stream_name, durable)  # and it did not create it

        # The operator's provisioning: the stream and every service's durables.
        durables = await provision(js, deployed)
        expected = {c.name: c.subjects for s in SERVICE_NAMES for c in load_spec(s).consumers(None)}
        assert sorted(durables) == sorted(expected)
        for name, subjects in expected.items():
            info = await js.consumer_info(settings.stream_name, name)
            assert sorted(info.config.filter_subjects or [info.config.filter_subject]) == sorted(
                subjects
            )
            await ensure_consumer(js, deployed, name, subjects)  # a service's check passes

        # The stream as provisioned is what a service with the same settings expects; one
        # whose settings say otherwise (its inbox retention was checked against its own
        # max age) says so, loudly.
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="propdesk.bus"):
            await ensure_stream(js, deployed)
            assert not caplog.records, [r.getMessage() for r in caplog.records]
            other = deployed.model_copy(update={"stream_max_age_days": 7})
            await ensure_stream(js, other)
        assert any(
            "differs from this process's settings (max_age" in r.getMessage()
            for r in caplog.records
        ), [r.getMessage() for r in caplog.records]

        # A release that expects other filters than those provisioned says so, loudly.
        caplog.clear()
        name, subjects = next(iter(expected.items()))
        with caplog.at_level(logging.ERROR, logger="propdesk.bus"):
            await ensure_consumer(js, deployed, name, [*subjects, "pd.something_new.>"])
        assert any("this release expects" in r.getMessage() for r in caplog.records)
        info = await js.consumer_info(settings.stream_name, name)
        assert "pd.something_new.>" not in (info.config.filter_subjects or [])
    finally:
        await nc.close()


@pytest.mark.usefixtures("settings")  # the real stack, else skipped
def test_the_provision_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "propdesk.bus.cli", "provision"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "dispatch-complaints" in done.stdout and "reporting-activity" in done.stdout


@pytest.mark.usefixtures("settings")  # the real stack, else skipped
def test_a_deployed_service_without_its_stream_exits_saying_what_to_run() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "propdesk.service.runner", "sla", "--port", "0"],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PROPDESK_BUS_PROVISIONING": "operator",
            "PROPDESK_STREAM_NAME": f"MISSING{uuid4().hex[:8]}",
        },
        timeout=60,
    )
    assert done.returncode == 3, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "service sla cannot start" in out and "bus.cli provision" in out
    assert "Traceback" not in out


def test_provisioning_waits_for_a_nats_that_is_still_starting(tmp_path) -> None:
    """Compose starts the one-shot as soon as the NATS nodes answer their health check,
    before JetStream has leaders; a provisioning that gave up at once kept every service
    from starting. It tries again for up to --wait seconds (here NATS is not even up)."""
    import time

    from propdesk.devstack.nats import NatsServer
    from propdesk.devstack.ports import free_port

    port = free_port()
    command = subprocess.Popen(
        [sys.executable, "-m", "propdesk.bus.cli", "provision", "--wait", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PROPDESK_NATS_URL": f"nats://127.0.0.1:{port}"},
    )
    server = NatsServer(tmp_path, port)
    try:
        time.sleep(3)
        assert command.poll() is None, "gave up while NATS was not there yet"
        server.start()
        out, err = command.communicate(timeout=60)
    finally:
        server.stop()
        if command.poll() is None:
            command.kill()
    assert command.returncode == 0, out + err
    assert "waiting for JetStream" in err and "dispatch-complaints" in out
