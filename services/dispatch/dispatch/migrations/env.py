from propdesk.db.migrations import run_env

run_env("dispatch")
