"""Onboarding a property company from one document: parse (with line numbers), validate,
apply idempotently, report what changed."""
