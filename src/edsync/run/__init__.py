"""Running the engine: draining a source into the mirror, once (backfill), for
ever (the daemon), or again over quarantined events; the locks and the stop
signal that keep two runs from writing one source."""
