"""Fixtures for the cross-service tests (end to end, isolation, faults).

`settings` comes from the repository's root conftest.py: `make test` starts a throwaway
stack and exports PROPDESK_DATABASE_URL / PROPDESK_NATS_URL / PROPDESK_REDIS_URL (already
bootstrapped and migrated); without them, tests that need servers are skipped. Tests that
must stop and restart a server start their own from `propdesk.devstack` (NatsServer,
PostgresServer, RedisServer on `free_port()` under `tmp_path`).
"""
