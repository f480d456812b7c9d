"""Encoding an event: `iso` writes every datetime as before (isoformat with milliseconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from worktool.models import iso


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))]),
)
def test_iso_writes_what_isoformat_wrote(naive: datetime, tz: timezone) -> None:
    dt = naive.replace(tzinfo=tz)
    assert iso(dt) == dt.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
    assert (
        iso(dt.replace(microsecond=0)) == dt.astimezone(UTC).replace(microsecond=0).isoformat()[:-6] + ".000Z"
    )
