"""MLLP (minimal lower layer protocol) framing: ``<VT> message <FS><CR>``.

``frame`` wraps one message; ``MllpDecoder`` turns the chunks a socket delivers into complete
messages. The decoder is for hostile networks: bytes outside a frame are skipped and counted, a
frame that grows past ``max_message_bytes`` is dropped (and counted) instead of filling memory,
and a new start block inside an unfinished frame starts over (the sender gave up on the first).
"""

from __future__ import annotations

from .er7 import MAX_MESSAGE_BYTES

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"


def frame(message: bytes) -> bytes:
    """``message`` wrapped in an MLLP frame."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


class MllpDecoder:
    """Incremental MLLP decoder: ``feed(chunk)`` returns the messages completed by that chunk.

    Counters for the listener's logs and its decision to drop a connection:
    ``garbage_bytes`` (bytes outside any frame) and ``oversized_frames`` (frames dropped for
    exceeding ``max_message_bytes``).
    """

    def __init__(self, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self.garbage_bytes = 0
        self.oversized_frames = 0
        self._buffer = bytearray()
        self._in_frame = False
        self._skipping = False  # inside a frame that is being dropped for its size
        self._after_end = False  # just saw FS: the CR that should follow is not garbage

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame currently held."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Consume ``chunk``; return the complete messages (without framing bytes) in order."""
        messages: list[bytes] = []
        position = 0
        size = len(chunk)
        while position < size:
            if not self._in_frame:
                start = chunk.find(START_BLOCK, position)
                skipped = chunk[position : size if start < 0 else start]
                if self._after_end and skipped[:1] == CARRIAGE_RETURN:
                    skipped = skipped[1:]
                self._after_end = False
                self.garbage_bytes += len(skipped)
                if start < 0:
                    return messages
                self._in_frame, self._skipping = True, False
                self._buffer.clear()
                position = start + 1
                continue
            end = chunk.find(END_BLOCK, position)
            restart = chunk.find(START_BLOCK, position)
            if restart >= 0 and (end < 0 or restart < end):
                # A new frame begins before this one ended: the unfinished one is garbage.
                self.garbage_bytes += len(self._buffer) + (restart - position) + 1
                self._buffer.clear()
                self._skipping = False
                position = restart + 1
                continue
            piece_end = size if end < 0 else end
            if not self._skipping:
                self._buffer += chunk[position:piece_end]
                if len(self._buffer) > self.max_message_bytes:
                    self.oversized_frames += 1
                    self._buffer.clear()
                    self._skipping = True
            if end < 0:
                return messages
            if not self._skipping:
                messages.append(bytes(self._buffer))
            self._buffer.clear()
            self._in_frame, self._skipping, self._after_end = False, False, True
            position = end + 1
        return messages
