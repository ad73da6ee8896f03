"""Where judged envelopes are written: a Protocol, and errors that tell retry from poison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ems_platform.core.errors import PlatformError
from ems_platform.ingest.envelope import Envelope


class StoreUnavailableError(PlatformError):
    """The database could not take the batch now; the same batch is retried later."""


class BatchRejectedError(PlatformError):
    """The database refused the batch's data; retrying it unchanged cannot succeed."""


class ReadingStore(Protocol):
    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        """Store a batch in one transaction; return how many rows of each envelope were new.

        Computes each new row's delta and flags against what is stored (see
        ``quality.plan_batch``) and sets each envelope's ``conflicts``.
        """
        ...
