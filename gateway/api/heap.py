"""The garbage collector's settings for a process that serves the gateway."""

from __future__ import annotations

import gc

# A young collection after this many new container objects that are still alive (CPython's
# default is 700). Requests free nearly all they allocate by reference counting, so this only
# spaces out collections; reference cycles are still collected.
YOUNG_THRESHOLD = 50_000

_settled = False


def settle_after_startup() -> None:
    """Freeze what startup loaded and collect young objects less often, once per process.

    Startup leaves ~140,000 long-lived objects (the FHIR models, SQLAlchemy's metadata, the
    routes). Every full collection walked them all: on a store of 100,000 resources, one gateway
    process ran 13 full collections of ~93 ms each during a warm-up and 8 s of reads under load
    (measured with ``gc.callbacks``), each stalling every request in flight. Frozen, they are
    never walked; objects made later are collected as before.
    """
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 20, 10)
