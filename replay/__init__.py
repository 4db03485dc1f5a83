"""Dead-letter replay (issue 22 item 2): an operator tool, never shipped with the job.

``python -m replay --help``. Letters selected from the dead-letter topic get their originals back (by position
from the input topic, or from the sealed copy), go through an optional fix-up, and are recorded in a
corrections topic keyed by their source position; then the input is re-anonymized with every correction
in place by the job itself (a bounded backfill into a staging database) and the changed windows are merged
into the live database without ever showing a class below k (README, "Replaying dead letters").
"""
