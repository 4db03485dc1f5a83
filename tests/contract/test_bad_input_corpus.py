"""Every corpus entry is rejected with exactly its expected reason."""

from __future__ import annotations

import pytest

from contract.frames import REASONS, Rejection, parse_frame
from devstack.bad_input_corpus import BAD_INPUTS, BadInput, bad_inputs, injectable_bad_inputs


@pytest.mark.parametrize("entry", BAD_INPUTS, ids=[entry.name for entry in BAD_INPUTS])
def test_corpus_entry_rejected_with_expected_reason(entry: BadInput) -> None:
    result = parse_frame(entry.value, entry.record_timestamp_ms)
    assert isinstance(result, Rejection), f"{entry.name} accepted: {result!r}"[:500]
    assert result.reason == entry.expected_reason, f"{entry.name}: {result}"


def test_corpus_size_and_coverage() -> None:
    assert len(BAD_INPUTS) >= 50
    assert len({entry.value for entry in BAD_INPUTS}) == len(BAD_INPUTS)  # all distinct
    used = {entry.expected_reason for entry in BAD_INPUTS}
    assert used == REASONS - {"internal_error"}  # every reason code has at least one example
    sizes = {entry.name: len(entry.value) for entry in BAD_INPUTS}
    assert sizes["oversized_10mb"] > 10_000_000
    assert sizes["empty_message"] == 0


def test_corpus_depends_on_ts_only_through_ts() -> None:
    later = bad_inputs(1_800_000_000_000, include_oversized=False)
    assert [e.name for e in later] == [e.name for e in bad_inputs(include_oversized=False)]
    for entry in later:
        assert parse_frame(entry.value, entry.record_timestamp_ms).reason == entry.expected_reason  # type: ignore[union-attr]


def test_injectable_entries_fit_a_default_broker_and_keep_their_reason_with_a_record_ts() -> None:
    ts = 1_800_000_000_000
    entries = injectable_bad_inputs(ts)
    assert len(entries) >= 50
    assert max(len(entry.value) for entry in entries) < 1_000_000
    for entry in entries:
        result = parse_frame(entry.value, ts)  # as the job sees them: record timestamp = slot ts
        assert isinstance(result, Rejection) and result.reason == entry.expected_reason, entry.name
