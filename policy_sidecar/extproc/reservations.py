"""A worker's admitted requests whose reservations are not settled yet, by ticket.

The body phase reserves tokens, then answers Envoy with the request's facts (charges
included) as metadata; the access log line carries them back, and the reader settles
(`extproc.completion`). When Envoy never applies that answer (the client went away
after admission, the message timed out, the stream was reset), the line comes without
the facts, so nothing would settle the reservation and the application's counters
would stay over-charged until the window ends.

So each request gets a *ticket* in its headers phase (this process's random prefix and
a counter: unique, unlike the request id, which the client may choose), sent with the
worker's port in the headers response's metadata: Envoy applies that before it sends
the body, so every line of a request that reached the body phase names its worker (the
line goes to that worker's file) and its ticket. After admission the worker keeps the
facts here. Its reader takes them back when the line arrives:

* a line with the facts: settled as usual; the entry only goes;
* a line without them: nothing went upstream, the reservation is given back
  (settled to zero) and the request recorded with the kept facts;
* a line read before the admission finished (a slow counter store): the ticket is
  remembered as ended for `ENDED_SECONDS`, and the admission gives its reservation
  back at once (`add` returns False);
* no line within `PENDING_SECONDS` (longer than any request may run; Envoy lost it,
  e.g. it was killed): the entry is dropped and the reservation kept, charged as
  estimated; logged and counted.

One per worker process, on its event loop; not thread-safe. Pure bookkeeping (the
caller passes the time and settles).
"""

from __future__ import annotations

import itertools
import logging
import secrets
from typing import Final

from policy_sidecar.extproc.facts import RequestFacts
from policy_sidecar.observability.metrics import observe_unsettled_reservation

__all__ = ["ENDED_SECONDS", "PENDING_SECONDS", "PendingReservations"]

log = logging.getLogger(__name__)

# Longer than any request may last (the routes' 600 s timeout) plus the log's delay.
PENDING_SECONDS: Final = 900.0
# Longer than an admission may take (message timeout, counter store timeouts).
ENDED_SECONDS: Final = 60.0


class PendingReservations:
    def __init__(self) -> None:
        # Another prefix per process: a line of a previous process never matches.
        self._prefix = secrets.token_hex(4) + "."
        self._numbers = itertools.count(1)
        # ticket -> (facts with charges, when to give up); insertion (time) order.
        self._pending: dict[str, tuple[RequestFacts, float]] = {}
        # tickets whose line came before their admission finished -> when to forget
        self._ended: dict[str, float] = {}
        self.expired = 0  # entries dropped without a line

    def __len__(self) -> int:
        return len(self._pending)

    def issue(self) -> str:
        """A new ticket, unique in this process and across its restarts."""
        return f"{self._prefix}{next(self._numbers)}"

    def add(self, facts: RequestFacts, now: float) -> bool:
        """Keeps an admitted request's facts (with its charges) until its line comes.
        False when the line came already: the caller gives the reservation back now."""
        ticket = facts.ticket
        if ticket is None or not facts.charges:
            return True
        self._sweep(now)
        if self._ended.pop(ticket, None) is not None:
            return False
        self._pending[ticket] = (facts, now + PENDING_SECONDS)
        return True

    def take(self, ticket: str | None, now: float, *, facts_arrived: bool) -> RequestFacts | None:
        """The kept facts of the request whose line this is, removed; None if none.
        A line without the body phase's facts for one of this process's tickets that
        is not kept (yet) marks it ended, so a late `add` gives its reservation back."""
        if ticket is None:
            return None
        held = self._pending.pop(ticket, None)
        if held is not None:
            return held[0]
        if not facts_arrived and ticket.startswith(self._prefix):
            self._sweep(now)
            self._ended[ticket] = now + ENDED_SECONDS
        return None

    def _sweep(self, now: float) -> None:
        while self._pending:
            ticket, (facts, deadline) = next(iter(self._pending.items()))
            if deadline > now:
                break
            del self._pending[ticket]
            self.expired += 1
            observe_unsettled_reservation("expired")
            log.warning(
                "no access log line for request %s within %.0fs: its token reservation"
                " is kept as charged",
                facts.request_id[:128],
                PENDING_SECONDS,
                extra={"event": "reservation_unsettled", "request_id": facts.request_id[:128]},
            )
        while self._ended:
            ticket, deadline = next(iter(self._ended.items()))
            if deadline > now:
                break
            del self._ended[ticket]
