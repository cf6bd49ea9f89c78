"""ibpilot: run automated trading strategies on Interactive Brokers, safely.

The package also ships a simulated IB Gateway (:mod:`ibpilot.sim`) that speaks the
TWS API wire protocol, so that everything runs without an IBKR account.
"""

__version__ = "0.1.0"
