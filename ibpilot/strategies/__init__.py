"""Strategies: the built-in templates and the base class for user code.

A strategy file's ``strategy`` names a template (``"sma_cross"``) or a user class as
``"package.module:Class"``; :func:`load_strategy_class` turns either into a class.
"""

from __future__ import annotations

import importlib

from ibpilot.strategies.base import (
    Bar,
    BarBuilder,
    Context,
    ContextData,
    Fill,
    Quote,
    Strategy,
    StrategyFailure,
    StrategyLoadError,
    call_hook,
)

__all__ = [
    "TEMPLATES",
    "Bar",
    "BarBuilder",
    "Context",
    "ContextData",
    "Fill",
    "Quote",
    "Strategy",
    "StrategyFailure",
    "StrategyLoadError",
    "call_hook",
    "load_strategy_class",
]

TEMPLATES = {"sma_cross": "ibpilot.strategies.sma_cross:SmaCross"}


def load_strategy_class(name: str) -> type[Strategy]:
    """The class a strategy file names: a template name or ``package.module:Class``.

    Raises StrategyLoadError (one line, naming what failed) when the template is unknown, the
    module cannot be imported (or raises while importing), the attribute is missing, or it is
    not a subclass of :class:`Strategy`.
    """
    if ":" not in name:
        if name not in TEMPLATES:
            known = ", ".join(sorted(TEMPLATES))
            raise StrategyLoadError(
                f"strategy {name!r}: no such template (templates: {known}; "
                'a class of your own is named "package.module:Class")'
            )
        name = TEMPLATES[name]
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute:
        raise StrategyLoadError(f'strategy {name!r}: expected "package.module:Class"')
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise StrategyLoadError(
            f"strategy {name!r}: cannot import {module_name!r} ({exc}); "
            "is it installed, or on PYTHONPATH?"
        ) from None
    except Exception as exc:
        raise StrategyLoadError(
            f"strategy {name!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
    found = getattr(module, attribute, None)
    if found is None:
        raise StrategyLoadError(f"strategy {name!r}: {module_name!r} has no {attribute!r}")
    if not isinstance(found, type) or not issubclass(found, Strategy):
        raise StrategyLoadError(
            f"strategy {name!r}: {attribute!r} is not a subclass of ibpilot.strategies.Strategy"
        )
    return found
