"""The Prometheus metric and label names that joblogger.semconv allows.

Example:
    >>> "job_runs_total" in METRICS and "job_run_duration_seconds_bucket" in METRICS
    True
    >>> sorted(LABELS & {"job", "job_name", "le", "pod"})
    ['job', 'job_name', 'le']
"""

from __future__ import annotations

from joblogger import semconv

#: Attribute keys of semconv (constants JOB_* and ERROR_TYPE, without the ``*_PREFIX`` ones).
ATTRIBUTE_KEYS: frozenset[str] = frozenset(
    value
    for name, value in vars(semconv).items()
    if (name.startswith("JOB_") or name == "ERROR_TYPE") and not name.endswith("_PREFIX") and isinstance(value, str)
)


def _metric_names() -> frozenset[str]:
    names: set[str] = set()
    for metric, (kind, _unit) in semconv.METRICS.items():
        base = semconv.prometheus_name(metric)
        if kind == "histogram":
            names.update(base + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(base)
    return frozenset(names)


#: Every series name the collector writes for joblogger's metrics.
METRICS: frozenset[str] = _metric_names()

#: Labels: semconv attributes, plus `job`/`instance` (resource), `le` (histograms), `trace_id` (exemplars).
LABELS: frozenset[str] = frozenset(
    {semconv.prometheus_label(k) for k in ATTRIBUTE_KEYS} | {"job", "instance", "le", "trace_id"}
)
