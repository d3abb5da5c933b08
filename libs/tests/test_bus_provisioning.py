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

        # A release that expects other filters than those provisioned says so, loudly.
        name, subjects = next(iter(expected.items()))
        with caplog.at_level(logging.ERROR, logger="propdesk.bus"):
            await ensure_consumer(js, deployed, name, [*subjects, "pd.something_new.>"])
        assert any("this release expects" in r.getMessage() for r in caplog.records)
        info = await js.consumer_info(settings.stream_name, name)
        assert "pd.something_new.>" not in (info.config.filter_subjects or [])
    finally:
        await nc.close()


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
