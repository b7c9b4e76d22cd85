"""Summarise a py-spy `--format raw` (collapsed stacks) file: the top self and inclusive costs."""

from __future__ import annotations

import re
import sys
from collections import Counter

PATTERN = re.compile(r"^(.*) (\d+)$")


def main(path: str, top: int = 30) -> None:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(path) as stacks:
        lines = stacks.readlines()
    for line in lines:
        match = PATTERN.match(line.rstrip("\n"))
        if not match:
            continue
        frames, count = match.group(1).split(";"), int(match.group(2))
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print(f"{total} samples")
    print("-- self --")
    for frame, count in own.most_common(top):
        print(f"{100 * count / total:5.1f}%  {frame}")
    print("-- inclusive --")
    for frame, count in inclusive.most_common(top * 2):
        print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30)
