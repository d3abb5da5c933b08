"""propdesk shared library: settings, tenancy, database, event bus, telemetry, service factory."""
