"""Child processes of the local stack: start, log, watch, and stop them in order.

Each child runs in its own process group, so a Ctrl-C at the terminal reaches only the
supervisor, which then stops services before the servers they use. On Linux each child
also gets a parent-death signal, so a supervisor killed with SIGKILL leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1


class ChildDied(RuntimeError):
    def __init__(self, child: Child, returncode: int) -> None:
        self.child = child
        self.returncode = returncode
        tail = "\n".join(f"    {line}" for line in child.tail(25))
        super().__init__(
            f"{child.name} exited unexpectedly with status {returncode}; "
            f"last lines of {child.log_path}:\n{tail}"
        )


def _parent_death_signal(sig: int) -> Callable[[], None]:
    """A preexec_fn asking Linux to send `sig` to the child when the spawning thread exits."""

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


class Child:
    """One supervised process. Output goes to `log_path`; with `echo_prefix` it is also
    copied to the console line by line, prefixed; with `inherit_output` it goes straight
    to the supervisor's stdout/stderr (for pytest and ruff) and is not logged."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        echo_prefix: str | None = None,
        inherit_output: bool = False,
        tier: int = 0,
    ) -> None:
        self.name = name
        self.tier = tier
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.user = user
        self.stop_signal = stop_signal
        self.echo_prefix = echo_prefix
        self.inherit_output = inherit_output
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop_requested = False
        self._pump: threading.Thread | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.running():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        kwargs: dict[str, object] = {}
        if self.user is not None and os.geteuid() == 0:
            import pwd

            entry = pwd.getpwnam(self.user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        # The kernel ties the parent-death signal to the spawning *thread*: only the main
        # thread lives as long as the process, so only children it starts get one.
        if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
            kwargs["preexec_fn"] = _parent_death_signal(self.stop_signal)
        self._stop_requested = False
        stdout: int | IO[bytes] | None = None
        if not self.inherit_output:
            if self.log_path is None:
                raise ValueError(f"{self.name}: log_path is required unless inherit_output")
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab", buffering=0)
            stdout = subprocess.PIPE if self.echo_prefix is not None else self._log
        self.proc = subprocess.Popen(  # type: ignore[call-overload]
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=None if self.inherit_output else subprocess.STDOUT,
            process_group=0,
            **kwargs,
        )
        if self.echo_prefix is not None and self.proc.stdout is not None:
            self._pump = threading.Thread(
                target=self._copy_output, name=f"log:{self.name}", daemon=True
            )
            self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None and self._log is not None
        prefix = (self.echo_prefix or "").encode()
        for line in iter(self.proc.stdout.readline, b""):
            self._log.write(line)
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.buffer.flush()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def send_signal(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def request_stop(self) -> None:
        """Send stop_signal once: a second SIGINT/SIGTERM means "force" to some servers."""
        if not self._stop_requested:
            self._stop_requested = True
            self.send_signal(self.stop_signal)

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ask politely (stop_signal), wait, then SIGKILL the whole process group."""
        if self.proc is None:
            return None
        self.request_stop()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            self.proc.wait(5)
        self._reap_group()
        self._close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the child and its group: an unclean death, as in a crash."""
        if self.proc is None:
            return
        self._kill_group()
        self.proc.wait(10)
        self._reap_group()
        self._close()

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def _reap_group(self) -> None:
        """Grandchildren (PostgreSQL backends) outlive their leader briefly; make sure of it."""
        assert self.proc is not None
        deadline = time.monotonic() + 5
        while _group_alive(self.proc.pid):
            if time.monotonic() > deadline:
                self._kill_group()
                break
            time.sleep(0.05)

    def _close(self) -> None:
        if self._pump is not None:
            self._pump.join(5)
            self._pump = None
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, lines: int = 20) -> list[str]:
        if self.log_path is None or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: unwind and stop everything."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


class Supervisor:
    """Supervised children, stopped by tier from the highest down: every service (tier 1)
    gets its stop signal at once and finishes in parallel, then the servers (tier 0)."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def start(self, child: Child) -> Child:
        self.add(child)
        child.start()
        return child

    def check(self) -> None:
        """Raise ChildDied if any supervised child has exited."""
        for child in self.children:
            rc = child.poll()
            if rc is not None:
                raise ChildDied(child, rc)

    def watch(self, interval: float = 0.2) -> None:
        """Block until a child dies (ChildDied) or a stop signal arrives (StopRequested)."""
        while True:
            self.check()
            time.sleep(interval)

    def stop_all(self, timeout: float = 20.0) -> None:
        for tier in sorted({c.tier for c in self.children}, reverse=True):
            group = [c for c in reversed(self.children) if c.tier == tier and c.proc is not None]
            for child in group:
                child.request_stop()
            for child in group:
                child.stop(timeout)
        self.children.clear()


def _raise_stop(signum: int, _frame: object) -> None:
    raise StopRequested(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into StopRequested in the main thread, then ignore repeats
    while the caller shuts down (a second Ctrl-C must not abandon half-stopped servers)."""
    previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)


def restore_signals() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
