"""A local, deterministic DreamApply journal over HTTP for the quickstart, tests and benchmarks.

``Simulator`` serves a generated journal, and an Edlink Graph API, on 127.0.0.1
(a thread, started by ``start()`` or ``with``); ``serve_forever`` backs
``edsync simulate``.
"""

from edsync.simulator.edlink_graph import EdlinkGraph, GraphTruth
from edsync.simulator.server import Simulator, serve_forever

__all__ = ["EdlinkGraph", "GraphTruth", "Simulator", "serve_forever"]
