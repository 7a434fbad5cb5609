"""Master key rotation without downtime (``zorgbrug keys rotate``).

1. A new key becomes current in the key file, beside the old ones; running gateways notice the
   file changed and wrap new content with it from their next write.
2. Every data key still wrapped by an old key is re-wrapped with the new one, in batches.
3. After a grace period (for a gateway that was mid-write), a second pass; then the old keys
   are removed from the file and a last pass catches any straggler with the old keys still in
   this process's memory. Should that pass fail, the old keys go back into the file: a
   straggler it did not reach would otherwise be unreadable for good. Content itself is never
   re-encrypted: only the data keys are.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.content.keyring import KEY_BYTES, new_key_id, write_key_file

if TYPE_CHECKING:
    from gateway.service.console import ConsoleChange


@dataclass(frozen=True)
class Rotation:
    key_id: str
    rewrapped: int
    retired: tuple[str, ...]


async def rotate_master_key(
    service: Any, change: ConsoleChange, *, grace_s: float = 5.0
) -> Rotation:
    """Rotate the master key of ``service``'s vault; its key checks must already pass. The
    audit record of ``change`` is written with the last step, which forgets the old keys; a
    step that fails before it is recorded as a failed change."""
    vault = service.vault
    ring = vault.keyring
    async with change.failure_recorded(service):
        ring.refresh()
        retired = dict(ring.keys)
        key_id = new_key_id()
        fresh = secrets.token_bytes(KEY_BYTES)
        write_key_file(ring.path, key_id, {**retired, key_id: fresh})
        ring.refresh()
        await service.start()  # records the check for the new key

        async def rewrap_all() -> int:
            total = 0
            while moved := await service.db.write(lambda conn: vault.rewrap(conn, retired)):
                total += moved
            return total

        rewrapped = await rewrap_all()
        await asyncio.sleep(grace_s)
        rewrapped += await rewrap_all()
        write_key_file(ring.path, key_id, {key_id: fresh})
        ring.refresh()
        try:
            rewrapped += await rewrap_all()
        except BaseException:
            write_key_file(ring.path, key_id, {**retired, key_id: fresh})
            ring.refresh()
            raise
    # Outside the block: a failure of this last step is recorded by the write itself.
    await change.write(service, lambda conn: vault.forget_keys(conn, retired))
    return Rotation(key_id, rewrapped, tuple(sorted(retired)))
