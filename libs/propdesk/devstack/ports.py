"""Finding free TCP ports and checking whether one is taken (127.0.0.1 only)."""

from __future__ import annotations

import socket

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """A port the kernel reports free right now (bind port 0). Racy by nature: use it soon."""
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
