"""Multi-step work with side effects: each flow runs inside one tenant transaction."""
