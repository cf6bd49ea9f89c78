"""The fault campaign: the runtime against a misbehaving simulated IB Gateway."""
