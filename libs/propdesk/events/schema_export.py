"""`python -m propdesk.events.schema_export [--check]`: JSON Schema for every event type.

Writes libs/propdesk/events/schemas/<type>.v<version>.json plus envelope.v1.json. With
--check, exits 1 and names the stale files instead of writing (the test suite runs it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from propdesk.events.envelope import ENVELOPE_VERSION, Envelope
from propdesk.events.registry import REGISTRY

SCHEMA_DIR = Path(__file__).parent / "schemas"


def render() -> dict[str, str]:
    files: dict[str, str] = {}
    env = Envelope.model_json_schema()
    env["$id"] = f"https://propdesk.dev/events/envelope.v{ENVELOPE_VERSION}.json"
    files[f"envelope.v{ENVELOPE_VERSION}.json"] = json.dumps(env, indent=2, ensure_ascii=False)
    for (event_type, version), model in sorted(REGISTRY.items()):
        schema = model.model_json_schema()
        schema["$id"] = f"https://propdesk.dev/events/{event_type}.v{version}.json"
        schema["x-event-type"] = event_type
        schema["x-schema-version"] = version
        schema["x-aggregate"] = model.aggregate
        files[f"{event_type}.v{version}.json"] = json.dumps(schema, indent=2, ensure_ascii=False)
    return {name: text + "\n" for name, text in files.items()}


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    wanted = render()
    present = {p.name for p in directory.glob("*.json")} if directory.exists() else set()
    stale = [
        n
        for n, t in wanted.items()
        if not (directory / n).exists() or (directory / n).read_text(encoding="utf-8") != t
    ]
    stale += sorted(present - wanted.keys())
    return sorted(stale)


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    wanted = render()
    for name, text in wanted.items():
        (directory / name).write_text(text, encoding="utf-8")
    for p in directory.glob("*.json"):
        if p.name not in wanted:
            p.unlink()
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="propdesk-schema-export")
    parser.add_argument("--check", action="store_true", help="fail if the exported files are stale")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale event schemas (run `make schemas`):", ", ".join(stale))
            return 1
        print("event schemas up to date")
        return 0
    names = write()
    print(f"wrote {len(names)} schemas to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
