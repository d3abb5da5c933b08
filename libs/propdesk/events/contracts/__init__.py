"""Event contracts, one module per aggregate. Every payload model here is exported as JSON
Schema to libs/propdesk/events/schemas/ by `make schemas` (a test fails when stale)."""
