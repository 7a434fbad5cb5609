"""Verify the audit chain: every link, every signed checkpoint, and the tail after the last one.

Streams the records in sequence order, so memory stays flat however long the log is. The first
problem found is named by its sequence number; an intact log names none.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from gateway.audit.chain import CHAINED, GENESIS, link_values
from gateway.audit.signing import CheckpointVerifier, checkpoint_message
from gateway.store.schema import audit_chain_head, audit_checkpoints, audit_events

BATCH = 5000


@dataclass(frozen=True)
class Verification:
    checked: int  # records whose link was recomputed
    checkpoints: int  # signed checkpoints confirmed
    first_bad: int | None = None  # the sequence number of the first bad record
    problem: str | None = None
    first_seq: int = 1  # where the chain starts (after a purge: past its anchor)
    last_seq: int = 0

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify(conn: Connection, verifier: CheckpointVerifier) -> Verification:
    marks = list(conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.seq)))
    for mark in marks:
        message = checkpoint_message(mark.kind, int(mark.seq), bytes(mark.hash), mark.recorded_us)
        if not verifier.verify(bytes(mark.signature), message):
            return Verification(
                0,
                0,
                int(mark.seq),
                f"the signature of the {mark.kind} at record {mark.seq} is not valid "
                f"for this key ({verifier.key_id})",
            )
    anchors = [m for m in marks if m.kind == "anchor"]
    start, previous = 1, GENESIS
    if anchors:  # records up to the last anchor were purged; the chain resumes after it
        start, previous = int(anchors[-1].seq) + 1, bytes(anchors[-1].hash)
    pinned = {int(m.seq): bytes(m.hash) for m in marks if m.kind == "checkpoint" and m.seq >= start}
    expected, checked, confirmed = start, 0, 0
    first_present = conn.execute(select(func.min(audit_events.c.seq))).scalar()
    if first_present is not None and first_present < start:
        return _bad(start, first_present, "a record older than the purge anchor is present")
    # Per statement: options set on the connection would stay on it for the caller's writes.
    rows = conn.execute(
        select(
            *(audit_events.c[name] for name in CHAINED), audit_events.c.content, audit_events.c.hash
        )
        .where(audit_events.c.seq >= start)
        .order_by(audit_events.c.seq)
        .execution_options(stream_results=True, yield_per=BATCH)
    )
    width = len(CHAINED)
    for row in rows:
        seq = int(row[0])
        if seq != expected:
            return _bad(start, expected, f"record {expected} is missing (removed)")
        computed = link_values(previous, list(row[:width]), row[width])
        if computed != bytes(row[width + 1]):
            return _bad(
                start,
                seq,
                f"record {seq} does not match its chain hash: it was changed, or records "
                "before it were inserted or reordered",
            )
        if seq in pinned:
            if pinned[seq] != computed:
                return _bad(
                    start,
                    seq,
                    f"the chain up to record {seq} differs from its signed checkpoint "
                    "(records up to it were rewritten)",
                )
            confirmed += 1
        previous, expected, checked = computed, seq + 1, checked + 1
    last = expected - 1
    beyond = [seq for seq in pinned if seq > last]
    if beyond:
        return Verification(
            checked,
            confirmed,
            last + 1,
            f"the log ends at record {last} but a signed checkpoint covers record "
            f"{max(beyond)}: records after {last} were removed (truncated)",
            start,
            last,
        )
    head = conn.execute(select(audit_chain_head.c.seq)).scalar()
    if head is not None and int(head) > last:
        return Verification(
            checked,
            confirmed,
            last + 1,
            f"the log ends at record {last} but the chain head says {head} (truncated)",
            start,
            last,
        )
    return Verification(checked, confirmed, first_seq=start, last_seq=last)


def _bad(start: int, seq: int, problem: str) -> Verification:
    return Verification(0, 0, seq, problem, start)
