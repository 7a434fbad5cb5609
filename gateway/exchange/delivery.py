"""The delivery worker: POSTs notification Tasks to partner endpoints from the outbox.

Each delivery is POSTed with ``Idempotency-Key`` and ``X-Zorgbrug-Delivery-Id`` set to its stable
id, so a receiver that sees it twice (a retry after a lost acknowledgement) can de-duplicate.
A 2xx answer is the acknowledgement. Other answers and network errors are retried with
exponential back-off and jitter until the retry budget is spent; then the delivery waits in the
dead-letter list (``zorgbrug deliveries list --failed``) for an operator's ``retry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
import uuid
from typing import Any

import httpx
import orjson
from sqlalchemy.engine import Connection

from gateway.audit import codes
from gateway.audit.event import Agent, AuditFacts
from gateway.context import LOCAL_OPERATOR, RequestContext
from gateway.errors import GatewayError
from gateway.exchange import outbox
from gateway.service.resources import ResourceService

log = logging.getLogger("zorgbrug.delivery")


class DeliveryWorker:
    """Claims due deliveries and performs them; several workers may share one outbox."""

    def __init__(self, service: ResourceService, *, http: httpx.AsyncClient | None = None) -> None:
        self.service = service
        self.settings = service.settings
        self.name = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._http = http

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, polling the outbox when it is empty."""
        async with httpx.AsyncClient(timeout=self.settings.delivery_timeout_s) as http:
            self._http = self._http or http
            while not stop.is_set():
                try:
                    done = await self.run_once()
                except Exception:  # the worker must outlive any one failure; it is logged
                    log.exception("delivery round failed")
                    done = 0
                if not done:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.delivery_poll_s)

    async def run_once(self, limit: int = 20) -> int:
        """Claim and attempt up to ``limit`` due deliveries; how many were attempted."""
        now = _now_us()
        claimed = await self.service.db.write(
            lambda conn: outbox.claim(
                conn, self.name, now, int(self.settings.delivery_lease_s * 1_000_000), limit
            )
        )
        if claimed:
            await asyncio.gather(*(self._attempt(d) for d in claimed))
        return len(claimed)

    async def _attempt(self, delivery: outbox.Delivery) -> None:
        refusal = await self.service.db.write(lambda conn: self._admit(conn, delivery))
        if refusal is not None:
            log.warning("delivery %s cancelled: %s", delivery.delivery_id, refusal)
            return
        try:
            payload = await self._payload(delivery)
            assert self._http is not None
            # httpx's timeout bounds each read, not the attempt: a receiver trickling its answer
            # would outlive the lease and another worker would deliver the same item meanwhile.
            async with asyncio.timeout(self.settings.delivery_timeout_s):
                response = await self._http.post(
                    delivery.endpoint,
                    content=payload,
                    headers={
                        "Content-Type": "application/fhir+json",
                        "Idempotency-Key": delivery.delivery_id,
                        "X-Zorgbrug-Delivery-Id": delivery.delivery_id,
                    },
                )
            error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
        except TimeoutError:
            error = f"no answer within {self.settings.delivery_timeout_s:g} s"
        except (httpx.HTTPError, GatewayError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if error is None:

            def done(conn: Connection) -> None:
                outbox.delivered(conn, delivery.delivery_id, self.name, _now_us())
                self._audit(conn, delivery, codes.SUCCESS, None)

            await self.service.db.write(done)
            return
        attempts = delivery.attempts + 1
        retry_at = self._next_attempt(attempts)
        level = logging.WARNING if retry_at is None else logging.INFO
        log.log(
            level,
            "delivery %s to %s failed (%s)",
            delivery.delivery_id,
            delivery.recipient_org,
            error,
        )

        def failed(conn: Connection) -> None:
            outbox.failed(conn, delivery.delivery_id, self.name, error, retry_at)
            self._audit(conn, delivery, codes.MINOR_FAILURE, error)

        await self.service.db.write(failed)

    def _admit(self, conn: Connection, delivery: outbox.Delivery) -> str | None:
        """None when the delivery may go ahead (its shares take effect); else it is cancelled,
        and its notification Task says why, for the sender to see."""
        refusal = self.service.admit_delivery(
            conn,
            delivery.delivery_id,
            delivery.sender_org,
            delivery.recipient_org,
            delivery.task_id,
        )
        if refusal is not None:
            outbox.cancelled(conn, delivery.delivery_id, self.name, refusal)
            self.service.cancel_notification(conn, delivery.sender_org, delivery.task_id, refusal)
            self._audit(conn, delivery, codes.SERIOUS_FAILURE, f"cancelled: {refusal}")
        return refusal

    def _audit(
        self, conn: Connection, delivery: outbox.Delivery, outcome: str, problem: str | None
    ) -> None:
        """The record of one delivery attempt, in the transaction that notes its outcome."""
        facts = AuditFacts(
            kind="delivery",
            agent=Agent("system", "zorgbrug-delivery", delivery.sender_org, "system", self.name),
            request_id=delivery.delivery_id,
            outcome=outcome,
            outcome_desc=problem,
            patient_key=self.service.patient_of(conn, "Task", delivery.task_id),
            custodian=delivery.sender_org,
            data=(f"Task/{delivery.task_id}",),
            details=(
                ("recipient", delivery.recipient_org),
                ("endpoint", delivery.endpoint),
                ("attempt", str(delivery.attempts + 1)),
            ),
            recorded_us=_now_us(),
        )
        self.service.audit.append(conn, [facts])

    def _next_attempt(self, attempts: int) -> int | None:
        """When to try again after ``attempts`` failures, or None when the budget is spent."""
        if attempts >= self.settings.delivery_max_attempts:
            return None
        ceiling = min(
            self.settings.delivery_backoff_cap_s,
            self.settings.delivery_backoff_s * 2 ** (attempts - 1),
        )
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter spreads retries out
        return _now_us() + int(delay * 1_000_000)

    async def _payload(self, delivery: outbox.Delivery) -> bytes:
        """The notification Task, with references made absolute when the base URL is known."""
        base = (self.settings.base_url or "").rstrip("/")
        ctx = RequestContext(actor=LOCAL_OPERATOR, base_url=f"{base}/fhir")
        result = await self.service.read(ctx, "Task", delivery.task_id)
        task: dict[str, Any] = orjson.loads(result.content or b"{}")
        if base:
            _absolute(task, f"{base}/fhir")
        return orjson.dumps(task)


def _absolute(node: Any, base: str) -> None:
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference.count("/") == 1 and ":" not in reference:
            node["reference"] = f"{base}/{reference}"
        for value in node.values():
            _absolute(value, base)
    elif isinstance(node, list):
        for value in node:
            _absolute(value, base)


def _now_us() -> int:
    return time.time_ns() // 1000
