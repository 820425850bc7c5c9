"""A local, deterministic DreamApply journal over HTTP for the quickstart, tests and benchmarks.

``Simulator`` serves a generated journal, an Edlink Graph API and a Learning Hub
Event Store on 127.0.0.1 (a thread, started by ``start()`` or ``with``);
``serve_forever`` backs ``edsync simulate``.
"""

from edsync_sim.edlink_graph import EdlinkGraph, GraphTruth
from edsync_sim.learninghub import HubPut, LearningHub
from edsync_sim.server import Simulator, serve_forever

__all__ = ["EdlinkGraph", "GraphTruth", "HubPut", "LearningHub", "Simulator", "serve_forever"]
