"""Brokers: IB's adapter (over ib_async) and an in-process paper broker, one interface."""
