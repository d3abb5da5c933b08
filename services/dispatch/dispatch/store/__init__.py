"""Dispatch tables and the typed queries the service needs (SQL in one place per concept)."""
