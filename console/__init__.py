"""The console API: operators' manual actions (cancel, escalate an alert) as control records."""
