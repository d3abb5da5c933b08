"""HTTP API: thin routers that parse, call a flow or a query, and answer."""
