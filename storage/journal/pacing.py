"""Background work in short steps, so request threads get the GIL back in between.

A compaction runs in a thread of the server process. Whatever it does while holding the GIL
(encoding, joining, freeing thousands of events at once) makes every request thread wait,
so it works in steps and pauses between them.
"""

from __future__ import annotations

import time

# How long a step pauses. time.sleep(0) drops the GIL but takes it straight back before a
# waiting thread is scheduled, which then waits out the interpreter's 5 ms switch interval
# (measured: member adds of 7-9 ms beside a compaction). A real sleep, however short, lets
# the waiter run.
PAUSE = 0.0001
# Objects freed per step: freeing the ~20,000 events kept between two compactions at 50,000
# users held the GIL for about 4 ms in one go.
RELEASE_STEP = 500


def pause() -> None:
    """Hand the GIL over to a thread waiting for it."""
    time.sleep(PAUSE)
