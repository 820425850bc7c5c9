"""The mirror database, and the only package that speaks SQL: schema and
migrations, the ledger's page fold (``ledger``, joined with ``snapshot`` in
``apply.Applier``), erasure, maintenance, checkpoints, the outbox's queries,
read-only summaries, locks."""
