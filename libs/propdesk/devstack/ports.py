"""Finding free TCP ports and checking whether one is taken (127.0.0.1 only)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOCALHOST = "127.0.0.1"
# Ports handed out start here, below the kernel's ephemeral range (read from Linux, else
# the IANA range's start, which macOS uses).
LOWEST = 10_000
EPHEMERAL_START_FALLBACK = 49_152
_choice = random.SystemRandom()  # not the `random` module's: tests reseed that one


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return EPHEMERAL_START_FALLBACK


def free_port(host: str = LOCALHOST) -> int:
    """A port free right now, and outside the kernel's ephemeral range: the kernel gives
    ports of that range to outgoing connections too (a client's, a pool's next one), so
    one chosen there could be taken before the server it is for binds it (a test saw a
    NATS node stop with its port taken). Racy by nature all the same: use it soon."""
    start = _ephemeral_start()
    if start - LOWEST >= 1_000:
        for _ in range(100):
            port = _choice.randrange(LOWEST, start)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class PortTakenError(RuntimeError):
    def __init__(self, what: str, port: int, env_var: str | None = None) -> None:
        hint = f" (set {env_var} to use another)" if env_var else ""
        super().__init__(f"{what}: port {port} on {LOCALHOST} is already in use{hint}")
