"""``python -m ibpilot``: the same as the ``ibpilot`` command."""

from ibpilot.cli import main

raise SystemExit(main())
