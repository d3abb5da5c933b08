"""Intake's tables (SQLAlchemy Core) and the typed queries the service needs. Every query
runs inside `propdesk.db.session.tenant_transaction`; row-level security does the rest."""
