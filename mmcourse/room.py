"""A room of laptops at a glance: the ``mmcourse doctor --json`` reports of every machine,
summarized as who is ready, which check fails where, and the fix for it::

    mmcourse doctor --json > reports/$(hostname).json     # on every laptop
    mmcourse doctor --summarize reports/*.json            # on the instructor's
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Summary:
    """What the reports of a room say."""

    ready: list[str] = field(default_factory=list)
    not_ready: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # laptop -> why
    failures: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # check -> laptops
    fixes: dict[str, str] = field(default_factory=dict)  # check -> fix
    details: dict[tuple[str, str], str] = field(default_factory=dict)  # (check, laptop) -> detail

    @property
    def ok(self) -> bool:
        return not self.not_ready and not self.unreadable


def summarize(paths: list[str | Path]) -> Summary:
    """Read doctor reports (one JSON file per laptop, named after it) into a summary."""
    if not paths:
        raise ValueError("no reports given: pass the JSON files of `mmcourse doctor --json`")
    s = Summary()
    for path in map(Path, paths):
        laptop = path.stem
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            checks = report["checks"]
            ok = bool(report["ok"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            s.unreadable[laptop] = f"{type(err).__name__}: {err}"
            continue
        failed = [c for c in checks if not c.get("ok")]
        (s.ready if ok and not failed else s.not_ready).append(laptop)
        for c in failed:
            name = str(c.get("check", "?"))
            s.failures[name].append(laptop)
            s.fixes.setdefault(name, str(c.get("fix", "")))
            s.details[(name, laptop)] = str(c.get("detail", ""))
    return s


def render(s: Summary) -> str:
    """The summary as text, the most common failure first."""
    total = len(s.ready) + len(s.not_ready) + len(s.unreadable)
    lines = [f"{total} laptop(s): {len(s.ready)} ready, {len(s.not_ready)} not ready"
             + (f", {len(s.unreadable)} report(s) unreadable" if s.unreadable else "")]
    for check, laptops in sorted(s.failures.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        lines.append("")
        lines.append(f"{check}: fails on {len(laptops)}: {', '.join(sorted(laptops))}")
        shown = {s.details[(check, laptop)] for laptop in laptops}
        for detail in sorted(shown)[:3]:
            lines.append(f"  e.g. {detail}")
        if s.fixes.get(check):
            lines.append(f"  fix: {s.fixes[check]}")
    for laptop, why in sorted(s.unreadable.items()):
        lines.append("")
        lines.append(f"{laptop}: report unreadable ({why}); run `mmcourse doctor --json` again")
    if s.ok:
        lines.append("\nEvery laptop is ready.")
    return "\n".join(lines)


def main(paths: list[str]) -> int:
    """Print the room's summary; 0 when every laptop is ready."""
    s = summarize(paths)
    print(render(s))
    return 0 if s.ok else 1
