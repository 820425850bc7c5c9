"""The mirror database, and the only package that speaks SQL: schema, migrations,
the apply engine, checkpoints, the outbox's queries, read-only summaries, locks."""
