"""Rows of the performance table (the issue's "work | ripple vs baseline | target"), collected across benchmarks.

Each benchmark takes ``--summary FILE`` and appends its rows there as JSON lines; ``bench/all.py`` prints them as one
Markdown table at the end.
"""

from __future__ import annotations

import json
from pathlib import Path


def record(path: str | None, work: str, result: str, ratio: float | None, target: str, met: bool | None) -> None:
    """Append one row: what was measured, the figures, the ratio to its baseline, the target and whether it was met."""
    if path is None:
        return
    with Path(path).open("a") as f:
        f.write(json.dumps({"work": work, "result": result, "ratio": ratio, "target": target, "met": met}) + "\n")


def table(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    out = ["| work | ripple vs baseline | ratio | target | met |", "|---|---|---:|---|---|"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        met = {True: "yes", False: "no", None: "—"}[r["met"]]
        out.append(f"| {r['work']} | {r['result']} | {ratio} | {r['target']} | {met} |")
    return "\n".join(out)
