"""Suite-wide setup, for every test directory."""

from __future__ import annotations

import signal

# A shell that starts the suite in the background (`./scripts/check &`, nohup, a CI runner's
# non-interactive shell) starts it with SIGINT ignored, and every process a test starts inherits
# that: Python then installs no KeyboardInterrupt handler, joblogger's configure() leaves SIGINT
# alone, and the tests that send a process Ctrl-C see nothing happen (exit 0 instead of -2).
# Give the suite, and through it every child, the disposition of a foreground terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
