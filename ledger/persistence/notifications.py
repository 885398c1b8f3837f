"""The ledger as an eventsourcing application, so that the library's ``ProjectionRunner`` can follow it.

Only the runner's subscription uses it: facts are appended through ``ledger.persistence.append``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from eventsourcing.persistence import JSONTranscoder, Mapper, Notification, StoredEvent

from ledger.events import Recorded, decode_state


class LedgerEvent(msgspec.Struct, frozen=True):
    """A ledger notification as a domain event for the library's subscription machinery."""

    originator_id: str
    originator_version: int
    record: Recorded


class MsgspecMapper(Mapper[str]):
    """Decodes the ledger's stored state (msgspec JSON) into ``LedgerEvent``s."""

    def __init__(self) -> None:
        # The base class wants a transcoder; ours is msgspec, used directly below.
        super().__init__(transcoder=JSONTranscoder())

    def to_domain_event(self, stored_event: StoredEvent) -> LedgerEvent:
        """The recorded fact behind a notification (position = notification id)."""
        if not isinstance(stored_event, Notification):
            raise TypeError("the ledger's mapper decodes notifications (it needs their position)")
        record = decode_state(stored_event.id, bytes(stored_event.state))
        oid = stored_event.originator_id
        version = stored_event.originator_version
        return LedgerEvent(str(oid), version, record)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        raise NotImplementedError("facts are appended through ledger.persistence.append, not the mapper")
