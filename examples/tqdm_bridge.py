"""A job full of tqdm bars reports through joblogger without rewriting its loops.

    python examples/tqdm_bridge.py [RUN_ID]

- ``from joblogger.tqdm import tqdm``: the job's own bars. The outer bar's ``desc``
  is the stage and its count the progress; the inner bar (``leave=False``) shows
  as the run's message.
- ``joblogger.tqdm.patch()``: bars of code that imported tqdm itself (here
  ``tqdm.auto``, as libraries do) report too.
- ``logging_redirect_tqdm()``: the job's ``logging`` lines become the run's log
  records (span events, OpenTelemetry logs), printed once, between the bars.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set it exports there (``joblogger.otlp.configure()``).
The last line printed is the run's summary as JSON (plus ``processedTotal``). ``EXAMPLE_DELAY`` (seconds per
item, default 0.002) makes it slower, to watch it live.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from tqdm.auto import tqdm as library_tqdm  # as a library imports it, long before the job starts

from joblogger import create_job_logger
from joblogger.tqdm import logging_redirect_tqdm, patch, tqdm, trange

log = logging.getLogger("thumbnailer")
DELAY = float(os.environ.get("EXAMPLE_DELAY", "0.002"))


def library_download(count: int) -> None:
    """Stands for third-party code: its own tqdm.auto bar, no joblogger in sight."""
    for _ in library_tqdm(range(count), desc="Downloading originals"):
        time.sleep(DELAY)


def main() -> int:
    run_id = sys.argv[1] if len(sys.argv) > 1 else None
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from joblogger import otlp

        otlp.configure()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with create_job_logger(run_id, "thumbnails") as job, patch(), logging_redirect_tqdm():
        library_download(120)
        for batch in trange(3, desc="Resizing batches"):
            for _ in tqdm(range(40), desc="images", leave=False):
                time.sleep(DELAY)
            log.info("batch %d resized", batch)
        with tqdm(total=1_000, desc="Uploading") as upload:
            for _ in range(100):
                upload.update(10)
                time.sleep(DELAY)
        log.warning("2 thumbnails were already up to date")
    assert job.summary is not None
    # The summary counts the last phase (the upload); processedTotal is every bar's count.
    print(json.dumps({**job.summary.to_dict(), "processedTotal": job.processed_total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
