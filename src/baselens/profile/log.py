"""Every filter reports what it removed and why (nothing is dropped silently)."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

logger = logging.getLogger("baselens")


@dataclass
class FilterEvent:
    stage: str
    what: str  # "rows" or "features"
    removed: int
    kept: int
    reason: str
    examples: list[str] = field(default_factory=list)
    quiet: bool = False  # a skip rather than a loss of data (e.g. an unformable batch level)


@dataclass
class FilterLog:
    """Collects :class:`FilterEvent` records; written to ``run.json`` and the report."""

    events: list[FilterEvent] = field(default_factory=list)

    def add(self, stage: str, what: str, removed: int, kept: int, reason: str,
            examples: list[str] | None = None, quiet: bool = False) -> None:
        """Record an event; removals are logged as warnings unless ``quiet`` (then info:
        the event is still in ``run.json`` and the report)."""
        ev = FilterEvent(stage, what, int(removed), int(kept), reason, list(examples or [])[:5],
                         quiet)
        self.events.append(ev)
        if removed:
            (logger.info if quiet else logger.warning)(
                "%s: removed %d %s (%d kept): %s%s", stage, removed, what, kept, reason,
                f" e.g. {', '.join(ev.examples)}" if ev.examples else "")
        else:
            logger.info("%s: kept all %d %s (%s)", stage, kept, what, reason)

    def to_records(self) -> list[dict]:
        return [asdict(e) for e in self.events]
