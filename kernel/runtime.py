"""The storage and messaging ports for function code, one set per event loop.

Functions are entry points, not composition roots the host lets us build: this module is where
they get their ``Adapters`` (built from the app settings, i.e. the process environment). The
adapters are asyncio objects, so each event loop gets its own; the Python worker runs every async
function of an app on one loop, and so does the embedded engine.
"""

from __future__ import annotations

import asyncio

from kernel import settings
from kernel.adapters.factory import Adapters

_by_loop: dict[asyncio.AbstractEventLoop, Adapters] = {}


def adapters() -> Adapters:
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = Adapters(settings.environment())
    return found


async def close() -> None:
    """Close the running loop's adapters (at shutdown)."""
    found = _by_loop.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
