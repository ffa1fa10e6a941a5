"""Integrations with job frameworks: one module per framework, one extra each.

``joblogger.integrations.celery``, ``.rq``, ``.dramatiq``, ``.arq`` and
``.apscheduler`` each turn a framework task into a joblogger run (run id = the
task id, job name = the task name, ``job.queue``/``job.worker``/``job.attempt``
on the run span) with one line of set-up; see docs/integrations.md. They share
:mod:`joblogger.integrations._common`.
"""
