"""Write tests/03 and tests/04 (the large inputs) deterministically: python3 gen.py

Test 03 is about 1.1 MB of stdin, test 04 about 2 MB spread over many lines. The expected
outputs are computed here too, independently of the solutions.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make(seed: int, count: int, per_line: int) -> tuple[str, str]:
    rng = random.Random(seed)
    values = [rng.randint(-10**9, 10**9) for _ in range(count)]
    lines = [" ".join(map(str, values[i:i + per_line])) for i in range(0, count, per_line)]
    return f"{count}\n" + "\n".join(lines) + "\n", f"{sum(values)}\n"


def main() -> None:
    for name, seed, count, per_line in (("03", 3, 100_000, 10), ("04", 4, 180_000, 1)):
        stdin, stdout = make(seed, count, per_line)
        (HERE / "tests" / f"{name}.in").write_text(stdin)
        (HERE / "tests" / f"{name}.out").write_text(stdout)


if __name__ == "__main__":
    main()
