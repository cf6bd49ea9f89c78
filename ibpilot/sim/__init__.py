"""A simulated IB Gateway that speaks the TWS API wire protocol.

``SimGateway`` is the entry point for tests and programs; ``ibpilot sim`` runs one
from the command line.
"""

from ibpilot.sim.clock import SimClock
from ibpilot.sim.server import SimGateway

__all__ = ["SimClock", "SimGateway"]
