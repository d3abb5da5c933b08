"""Finding free TCP ports and checking whether one is taken (127.0.0.1 only)."""

from __future__ import annotations

import functools
import random
import socket
from collections import deque
from pathlib import Path

LOCALHOST = "127.0.0.1"
# Ports handed out start here, below the kernel's ephemeral range (read from Linux, else
# the IANA range's start, which macOS uses).
LOWEST = 10_000
EPHEMERAL_START_FALLBACK = 49_152
_choice = random.SystemRandom()  # not the `random` module's: tests reseed that one
# Ports this process handed out lately: a caller often picks several before any server
# binds one (a two-node cluster's six), and a port still free is not a port not promised.
_RECENT = 4_096
_handed_out: deque[int] = deque(maxlen=_RECENT)


@functools.cache
def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_START_FALLBACK


def free_port(host: str = LOCALHOST) -> int:
    """A port free right now that this process did not hand out lately: a caller often
    picks several before binding any, and a test's two NATS nodes were once given the
    same port (one node's client port, the other's monitor port: the second stopped).
    From below the kernel's ephemeral range, which outgoing connections (a client's, a
    pool's next one) draw from too. Racy by nature all the same (another process): use
    it soon."""
    start = _ephemeral_start()
    for _ in range(100):
        port = _choice.randrange(LOWEST, start) if start - LOWEST >= 1_000 else 0
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.append(port)
            return port
    raise OSError("no free port found in 100 tries")


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class PortTakenError(RuntimeError):
    def __init__(self, what: str, port: int, env_var: str | None = None) -> None:
        hint = f" (set {env_var} to use another)" if env_var else ""
        super().__init__(f"{what}: port {port} on {LOCALHOST} is already in use{hint}")
