"""`python -m bench.profile FILE [N]`: the functions where a py-spy raw (collapsed) profile
spends its time, self and inclusive, so a bench run says where the server's CPU goes."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path


def summarize(path: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        # "function (file:line)" → "function (file)": lines of one function count together.
        names = [f.rsplit(":", 1)[0] + ")" if f.endswith(")") else f for f in frames]
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    out = [f"{total} samples", "", "inclusive % | function"]
    out += [f"{100 * c / total:10.1f}  | {name}" for name, c in inclusive.most_common(top)]
    out += ["", "self % | function"]
    out += [f"{100 * c / total:6.1f} | {name}" for name, c in own.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25))
