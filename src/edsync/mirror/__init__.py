"""The mirror database: schema, migrations, the apply engine, checkpoints."""
