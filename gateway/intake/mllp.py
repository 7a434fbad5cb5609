"""``zorgbrug mllp``: an HL7 v2 listener (MLLP over TCP) that stores before it acknowledges.

Each framed message is converted (adapters.hl7v2) and stored through the gateway's service
layer as the sending organisation; only then is it answered with an ACK ``AA``. A message the
adapter refuses (malformed, unsupported type or version, unsafe) gets ``AR`` with an ERR
segment; one it converts only in part (an invalid BSN left out) or the gateway cannot store
gets ``AE``, and nothing of it is stored. No input ends the listener: a connection that
misbehaves is closed, the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from adapters import AdapterError, MllpDecoder, SourceInfo, ack, convert, frame
from adapters.hl7v2.er7 import MAX_MESSAGE_BYTES
from gateway.errors import GatewayError
from gateway.intake.submission import Intake

log = logging.getLogger("zorgbrug.mllp")
READ_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 300  # a sender that says nothing for this long is disconnected


class MllpListener:
    """Serves many senders at once; each connection's messages are handled in order."""

    def __init__(
        self, intake: Intake, organization: str, max_message_bytes: int = MAX_MESSAGE_BYTES
    ) -> None:
        self.intake = intake
        self.source = SourceInfo(organization=organization)
        self.max_message_bytes = max_message_bytes

    async def serve(
        self, host: str, port: int, stop: asyncio.Event, ready: Callable[[], None] = lambda: None
    ) -> None:
        """Listen until ``stop`` is set; ``ready`` is called once the port is bound."""
        server = await asyncio.start_server(self._connection, host, port)
        async with server:
            ready()
            await stop.wait()

    async def handle(self, message: bytes) -> bytes:
        """The ACK for one message, after storing it (never raises)."""
        try:
            # Validation is left to the gateway, which validates every resource it stores.
            conversion = convert("hl7v2", message, self.source, validate=False)
        except AdapterError as error:
            return ack(message, "AR", error)
        if not conversion.ok:  # the adapter left something out (an invalid BSN): store none
            return ack(
                message, "AE", "; ".join(str(i) for i in conversion.issues if i.severity == "error")
            )
        try:
            await self.intake.submit(conversion)
        except GatewayError as error:
            return ack(message, "AE", error.diagnostics)
        except Exception:  # one message's failure must not end the listener; it is logged
            log.exception("storing an HL7 v2 message failed")
            return ack(message, "AE", "the message could not be stored; the operator is told")
        return ack(message, "AA")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = MllpDecoder(self.max_message_bytes)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_BYTES), IDLE_TIMEOUT_S)
                if not data:
                    break
                for message in decoder.feed(data):
                    writer.write(frame(await self.handle(message)))
                    await writer.drain()
                if decoder.oversized_frames:
                    # The sender would wait for an answer to a frame we dropped: refuse it and
                    # hang up rather than read the rest of it.
                    refusal = f"message exceeds the {self.max_message_bytes} byte bound"
                    writer.write(frame(ack(b"", "AR", refusal)))
                    await writer.drain()
                    break
        except (TimeoutError, ConnectionError, OSError):
            pass  # the sender went away or fell silent: nothing of theirs is half-stored
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
