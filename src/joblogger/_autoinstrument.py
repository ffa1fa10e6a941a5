"""joblogger's entry for OpenTelemetry auto-instrumentation (``opentelemetry-instrument``).

Registered as the ``joblogger`` entry point of group ``opentelemetry_instrumentor``,
so ``opentelemetry-instrument`` loads it after the SDK is configured; turn it off
with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=joblogger``. It:

- turns snapshot spans on, as ``joblogger.otlp.configure()`` does, so runs and
  stages show in the trace backend while they run and a killed run keeps its
  last checkpoint;
- under ``joblogger run`` (``JOBLOGGER_BOOTSTRAP=1``), configures joblogger there
  (terminal view, signal handling), reusing the SDK's providers: when
  ``opentelemetry-instrument`` runs inside ``joblogger run``, its
  ``sitecustomize`` is the one Python imports, and this is how joblogger still
  gets configured.

Job log records need nothing from here: joblogger emits them to the global
``LoggerProvider`` the SDK registered (see ``joblogger._logexport``).
Requires ``opentelemetry-instrumentation`` (installed with ``opentelemetry-distro``).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from ._snapshots import DEFAULT_INTERVAL_S, configure_snapshots

__all__ = ["JobLoggerInstrumentor"]


class JobLoggerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Snapshot spans on; joblogger configured when started by ``joblogger run``."""

    def instrumentation_dependencies(self) -> Collection[str]:
        """None beyond joblogger itself."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        configure_snapshots(True, DEFAULT_INTERVAL_S)
        from .cli import bootstrap

        bootstrap()

    def _uninstrument(self, **kwargs: Any) -> None:
        configure_snapshots(False, DEFAULT_INTERVAL_S)
