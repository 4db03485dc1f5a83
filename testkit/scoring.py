"""Scores anomaly events against the simulator's ground-truth episodes: precision and recall per kind."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from testkit.jobs import TEST_SECRET


@dataclass(frozen=True)
class EpisodeScore:
    kind: str
    events: int
    true_events: int
    episodes: int
    episodes_found: int

    @property
    def precision(self) -> float:
        return self.true_events / self.events if self.events else float("nan")

    @property
    def recall(self) -> float:
        return self.episodes_found / self.episodes if self.episodes else float("nan")



# Which ground-truth episode kinds an anomaly kind may report (z-scores report either direction).
MATCHING_EPISODES = {
    "tachycardia": {"tachycardia"}, "bradycardia": {"bradycardia"}, "asystole": {"asystole"}, "noise": {"noise"},
    "hr_zscore_30s": {"tachycardia", "bradycardia"}, "hr_zscore_5min": {"tachycardia", "bradycardia"},
}



def score_events(events: Iterable[dict[str, Any]], truth: Iterable[dict[str, Any]], secret: str = TEST_SECRET,
                 slack_ms: int = 0) -> dict[str, EpisodeScore]:
    """Precision (events overlapping an episode of a matching kind on the same pid) and recall
    (episodes with at least one such event) per anomaly kind."""
    from privacy.pseudonym import pseudonymize

    episodes = [{**t, "pid": pseudonymize(t["patient_id"], secret.encode(), scope=t["site"])} for t in truth]
    events = list(events)
    scores = {}
    for kind, matching in MATCHING_EPISODES.items():
        own = [e for e in events if e["kind"] == kind]
        relevant = [t for t in episodes if t["kind"] in matching]

        def overlaps(event: dict[str, Any], episode: dict[str, Any]) -> bool:
            return (event["pid"] == episode["pid"] and event["window_start"] < episode["end_ms"] + slack_ms
                    and event["window_end"] > episode["start_ms"] - slack_ms)

        true_events = sum(1 for e in own if any(overlaps(e, t) for t in relevant))
        found = sum(1 for t in relevant if any(overlaps(e, t) for e in own))
        scores[kind] = EpisodeScore(kind, len(own), true_events, len(relevant), found)
    return scores



def score_table(scores: dict[str, EpisodeScore]) -> str:
    lines = ["kind              events  precision  episodes  recall"]
    for score in scores.values():
        lines.append(f"{score.kind:<17} {score.events:>6}  {score.precision:>9.2f}  {score.episodes:>8}  "
                     f"{score.recall:>6.2f}")
    return "\n".join(lines)

