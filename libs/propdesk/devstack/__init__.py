"""The local stack: real PostgreSQL, NATS JetStream and Redis from PyPI wheels, supervised.

`python -m propdesk.devstack run|test|bench|migrate|lock` (see cli.py). Tests that need
their own throwaway servers (the fault tests stop and restart NATS) use the server
classes directly::

    from propdesk.devstack import NatsServer, free_port

    nats = NatsServer(tmp_path, free_port())
    nats.start()      # blocks until JetStream answers
    ...
    nats.stop()       # or nats.kill() for an unclean death; start() again to restart
"""

from propdesk.devstack.nats import NatsServer
from propdesk.devstack.ports import free_port, port_in_use
from propdesk.devstack.postgres import PostgresServer
from propdesk.devstack.redis import RedisServer
from propdesk.devstack.supervisor import Child, ChildDied, Supervisor

__all__ = [
    "Child",
    "ChildDied",
    "NatsServer",
    "PostgresServer",
    "RedisServer",
    "Supervisor",
    "free_port",
    "port_in_use",
]
