"""Upper bounds for hangs in the tests, never expectations of speed.

A shared CI machine can run at a load of 10 or more on 2 cores: a Python subprocess then
takes seconds to start and a delivery through the simulator tens of seconds. Every wait in
the suite polls for its condition and fails only after one of these bounds, so a slow
machine makes the suite slower, never red. Speed is measured by bench/, not by tests.
"""

from __future__ import annotations

#: A command run to its end, a `serve` start or stop, mail reaching the simulated mailbox.
HANG = 180.0
#: One client socket operation (connect, greeting, one reply) against a local server.
SOCKET = 60.0
#: The same for Playwright, which counts in milliseconds.
HANG_MS = int(HANG * 1000)
