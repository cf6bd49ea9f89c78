"""The faults of the campaign: every one the simulator offers, plus ``kill -9`` of the bot.

Each injector applies its fault to a running campaign, notes its parameters on the
:class:`~chaos_invariants.FaultRecord` and returns when the fault is over (the campaign then
stamps its end and waits for the recovery).  Durations are real seconds, drawn from the
campaign's seeded RNG.  Some faults only bite in combination: ``half_open`` and
``hold_client_id`` are followed by a drop, so that the bot's reconnect meets them.  Drops and
kills can be timed on an order: "after_order" strikes right after the simulator took a
placeOrder of the bot (the acknowledgement may be lost), "before_order" discards the
placeOrder and drops every socket, as a gateway crashing on receipt would.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .chaos_evidence import FaultRecord
from .chaos_harness import SYMBOLS, Arrival, until

if TYPE_CHECKING:
    from .chaos_campaign import Campaign

Injector = Callable[["Campaign", FaultRecord], Awaitable[None]]
ORDER_WAIT_S = 8.0  # how long a fault timed on an order waits for one
# a silenced feed must outlast the engine's maintenance tick (1 s of wall time) plus its
# stale-data bound (120 simulated s: 0.4 s at 300x) to be noticed for certain
SILENCE_S = 1.6


async def _sleep(c: Campaign, rec: FaultRecord, low: float, high: float) -> None:
    seconds = round(c.rng.uniform(low, high), 2)
    rec.params["for_s"] = seconds
    await asyncio.sleep(seconds)


async def _on_order(
    c: Campaign, rec: FaultRecord, strike: Callable[[], Any], discard: bool
) -> None:
    """Run ``strike`` (soon) when the next placeOrder of the bot arrives at the simulator;
    without one within ORDER_WAIT_S, at once."""
    hit: list[Arrival] = []

    def hook(arrival: Arrival) -> bool:
        if arrival.what != "place":
            c.tap.arm(hook)  # a cancel: wait for a placeOrder
            return False
        hit.append(arrival)
        asyncio.get_running_loop().call_soon(strike)
        return discard

    c.tap.arm(hook)
    if await until(lambda: hit, ORDER_WAIT_S):
        rec.params["order_ref"] = hit[0].order_ref
        await asyncio.sleep(0.05)
        return
    c.tap.disarm()
    rec.params["timing"] += " (no order came: at once)"
    strike()


async def drop(c: Campaign, rec: FaultRecord) -> None:
    timing = c.rng.choice(("random", "after_order", "before_order"))
    rec.params["timing"] = timing
    if timing == "random":
        c.gw.faults.drop_all()
    else:
        await _on_order(c, rec, c.gw.faults.drop_all, discard=timing == "before_order")


async def restart(c: Campaign, rec: FaultRecord) -> None:
    down = rec.params["down_s"] = round(c.rng.uniform(0.1, 0.8), 2)
    await c.gw.faults.restart(down, 0)


async def restart_rollback(c: Campaign, rec: FaultRecord) -> None:
    down = rec.params["down_s"] = round(c.rng.uniform(0.1, 0.8), 2)
    ids = rec.params["rollback_ids"] = c.rng.randint(1, 5)
    await c.gw.faults.restart(down, ids)


async def _lost(c: Campaign, rec: FaultRecord, data_lost: bool) -> None:
    c.gw.faults.connectivity_lost()
    await _sleep(c, rec, 0.1, 0.8)
    c.gw.faults.connectivity_restored(data_lost)


async def lost_kept(c: Campaign, rec: FaultRecord) -> None:
    await _lost(c, rec, False)


async def lost_data_lost(c: Campaign, rec: FaultRecord) -> None:
    await _lost(c, rec, True)


def _farm(name: str) -> Injector:
    async def farm(c: Campaign, rec: FaultRecord) -> None:
        c.gw.faults.farm(name, False)
        await _sleep(c, rec, 0.1, 0.8)
        c.gw.faults.farm(name, True)

    return farm


def _silence(existing_only: bool) -> Injector:
    async def silence(c: Campaign, rec: FaultRecord) -> None:
        symbols = sorted(c.rng.sample(SYMBOLS, c.rng.randint(1, len(SYMBOLS))))
        rec.params["symbols"] = symbols
        rec.params["subscriptions"] = c.gw.faults.silence(symbols, existing_only)
        await _sleep(c, rec, SILENCE_S, SILENCE_S + 0.8)
        c.gw.faults.unsilence()

    return silence


async def delay(c: Campaign, rec: FaultRecord) -> None:
    ms = rec.params["ms"] = c.rng.randint(50, 1000)
    c.gw.faults.delay(ms)
    await _sleep(c, rec, 0.1, 0.8)
    c.gw.faults.delay(0)


async def reject_next(c: Campaign, rec: FaultRecord) -> None:
    count = rec.params["count"] = c.rng.randint(1, 3)
    reason = rec.params["reason"] = f"chaos reject {rec.n}"
    c.gw.faults.reject_next(count, reason)


async def read_only(c: Campaign, rec: FaultRecord) -> None:
    c.gw.faults.read_only(True)
    await _sleep(c, rec, 0.1, 0.8)
    c.gw.faults.read_only(False)


async def half_open(c: Campaign, rec: FaultRecord) -> None:
    c.gw.faults.half_open(True)
    c.gw.faults.drop_all()
    await _sleep(c, rec, 0.3, 1.5)
    c.gw.faults.half_open(False)


async def hold_client_id(c: Campaign, rec: FaultRecord) -> None:
    c.gw.faults.hold_client_id(1)
    c.gw.faults.drop_all()
    await _sleep(c, rec, 0.2, 1.5)
    c.gw.faults.release_client_id(1)


async def schedule_restart(c: Campaign, rec: FaultRecord) -> None:
    faults = c.gw.faults
    ahead = c.rng.uniform(0.05, 0.5) * c.cfg.speed  # 0.05-0.5 real s ahead, simulated seconds
    down = rec.params["down_s"] = round(c.rng.uniform(0.1, 1.0), 2)
    ids = rec.params["rollback_ids"] = c.rng.randint(0, 3)
    at = datetime.fromtimestamp(c.gw.clock.now() + ahead, UTC)
    rec.params["at"] = f"{at:%H:%M:%S}Z"
    faults.schedule_restart(at, down, ids)
    await until(lambda: faults.restarting or not faults.scheduled, 30)
    rec.start_wall = time.time()  # the fault is the restart itself
    await until(lambda: not faults.restarting and not faults.scheduled, 30)


async def kill9(c: Campaign, rec: FaultRecord) -> None:
    timing = rec.params["timing"] = c.rng.choice(("random", "after_order"))
    if timing == "random":
        await c.bot.kill9()
    else:
        killing: list[asyncio.Task[None]] = []
        await _on_order(
            c, rec, lambda: killing.append(asyncio.ensure_future(c.bot.kill9())), discard=False
        )
        await asyncio.gather(*killing)
        if c.bot.running:
            await c.bot.kill9()
    await _sleep(c, rec, 0.0, 0.5)
    await c.bot.start()


async def rollback_kill9(c: Campaign, rec: FaultRecord) -> None:
    """The gateway restarts with nextValidId rolled back while the bot is killed: the new
    bot process starts from the rolled-back id (the hazard of Lean #242)."""
    down = rec.params["down_s"] = round(c.rng.uniform(0.3, 1.2), 2)
    ids = rec.params["rollback_ids"] = c.rng.randint(1, 5)
    c.gw.faults.start_restart(down, ids)
    await asyncio.sleep(0.05)
    await c.bot.kill9()
    await until(lambda: not c.gw.faults.restarting, 30)
    await c.bot.start()


INJECTORS: dict[str, Injector] = {
    "drop": drop,
    "restart": restart,
    "restart_rollback": restart_rollback,
    "lost_kept": lost_kept,
    "lost_data_lost": lost_data_lost,
    "farm_market": _farm("market"),
    "farm_hmds": _farm("hmds"),
    "farm_secdef": _farm("secdef"),
    "silence_renewable": _silence(existing_only=True),
    "silence_dead": _silence(existing_only=False),
    "delay": delay,
    "reject_next": reject_next,
    "read_only": read_only,
    "half_open": half_open,
    "hold_client_id": hold_client_id,
    "schedule_restart": schedule_restart,
    "kill9": kill9,
    "rollback_kill9": rollback_kill9,
}
WEIGHTS: dict[str, float] = dict.fromkeys(INJECTORS, 1.0) | {
    "drop": 1.5,
    "kill9": 0.6,
    "rollback_kill9": 0.3,
    "half_open": 0.6,
}


def pick(rng: random.Random, deck: list[str]) -> str:
    """The next fault's kind: from ``deck`` while it lasts (the campaign deals every kind once
    first, in a seeded order), then by weight."""
    if deck:
        return deck.pop()
    kinds = list(WEIGHTS)
    return rng.choices(kinds, weights=[WEIGHTS[k] for k in kinds])[0]
