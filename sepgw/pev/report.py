"""The PEV's run report: each step of the J3072 sequence with its outcome, timing and the
requirement IDs it exercised. Used against any EVSE it is a conformance check of that EVSE.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class Step:
    """One step of the sequence."""

    name: str
    requirements: tuple[str, ...]
    started: float
    ended: float | None = None
    passed: bool | None = None
    detail: str = ""

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class RunReport:
    """Steps in the order they ran; ``now`` is the clock the timings use."""

    now: Callable[[], float]
    evse: str = ""
    steps: list[Step] = field(default_factory=list)

    def begin(self, name: str, *requirements: str) -> Step:
        step = Step(name, requirements, self.now())
        self.steps.append(step)
        return step

    def end(self, step: Step, passed: bool, detail: str = "") -> None:
        step.ended = self.now()
        step.passed = passed
        step.detail = detail

    def record(self, name: str, passed: bool, detail: str = "", *requirements: str) -> None:
        """A step that happens at once (an event rather than an exchange)."""
        self.end(self.begin(name, *requirements), passed, detail)

    @property
    def passed(self) -> bool:
        return all(s.passed for s in self.steps if s.passed is not None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "evse": self.evse, "passed": self.passed,
            "steps": [dict(asdict(s), seconds=s.seconds) for s in self.steps],
        }

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def text(self) -> str:
        lines = [f"J3072 run report{' against ' + self.evse if self.evse else ''}:"]
        for s in self.steps:
            mark = {True: "PASS", False: "FAIL", None: "...."}[s.passed]
            took = f"{s.seconds * 1000:8.1f} ms" if s.seconds is not None else " " * 11
            ids = f"  [{' '.join(s.requirements)}]" if s.requirements else ""
            detail = f": {s.detail}" if s.detail else ""
            lines.append(f"  {mark} {took}  {s.name}{detail}{ids}")
        lines.append(f"  result: {'PASS' if self.passed else 'FAIL'}")
        return "\n".join(lines)
