"""The dispatcher: consumes worktool.commands, sends each command to WorkTool's sendRawMessage (WeCom
texts) or to the phone/SMS webhooks under WorkTool's rate limit, and writes every answer to worktool.raw
as an `accepted` raw record. It writes no command status itself: the dataflow derives it from the
accepted records and WorkTool's result callbacks (docs/rules.md §6, docs/operations.md "Dispatcher").

- wire.py: request bodies and the reading of answers (pure),
- ratelimit.py: the Redis limiter shared by every dispatcher process,
- claims.py: the per-command idempotency claims in Redis,
- sender.py: HTTP with retries and backoff,
- recorder.py: the accepted records,
- offsets.py: which consumer offsets may be committed,
- service.py: the consume → batch → send → record → commit loop.
"""
