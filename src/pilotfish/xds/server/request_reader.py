"""Reading xDS requests off the wire, once per distinct large request.

Theory of operation: proxies with the same configuration send the same large
requests. After its clusters arrive, every sidecar of a mesh with a thousand
services subscribes the same thousands of load assignments, and those
requests are byte for byte alike. Turning one into Python strings, sets and
the state machine's request record costs about as much as everything else
the control plane does for that stream in its initial push.

So the server's request deserializers are ``RequestReader.parse``, one reader
per message type (``DiscoveryRequest``, ``DeltaDiscoveryRequest``), each with
the conversion to its state machine's record. Requests
of at least ``min_bytes`` are kept, keyed by their bytes, in a
least-recently-used table within a byte budget. A request seen before gets
the very message object parsed the first time. ``record`` then gives that
message's record, built once as well, so every stream gets the same name set
objects, and interning them (``StreamStateBase``'s name sets) finds them by
identity. Small requests (ACKs, short subscriptions) are parsed and converted
each time: below the threshold, looking them up costs more than it saves.

Messages and records handed out here are shared between streams and must not
be changed; nothing in the server writes to a request. grpc.aio deserializes
on the event loop's thread, in the handler's read; the table is still guarded
by a lock, so a deserializer called from gRPC's own threads stays correct.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["RequestReader"]

# A subscription of about fifty names: smaller requests are not kept.
_MIN_BYTES = 2048
# About ten requests naming ten thousand load assignments each.
_BUDGET_BYTES = 8 * 1024 * 1024

Record = TypeVar("Record")


class RequestReader(Generic[Record]):
    """Parses requests with ``parse_bytes`` and converts them with ``convert``,
    sharing repeated large ones."""

    def __init__(
        self,
        parse_bytes: Callable[[bytes], Any],
        convert: Callable[[Any], Record],
        min_bytes: int = _MIN_BYTES,
        budget_bytes: int = _BUDGET_BYTES,
    ) -> None:
        self._parse_bytes = parse_bytes
        self._convert = convert
        self._min_bytes = min_bytes
        self._budget = budget_bytes
        self._held = 0
        self._by_bytes: OrderedDict[bytes, Any] = OrderedDict()
        # id of a kept message -> (that message, its record once converted).
        self._converted: dict[int, tuple[Any, Record | None]] = {}
        self._lock = threading.Lock()
        self.hits = 0

    def parse(self, raw: bytes) -> Any:
        """The request in ``raw``: the message parsed before when it was seen before."""
        if len(raw) < self._min_bytes or len(raw) > self._budget:
            return self._parse_bytes(raw)
        with self._lock:
            message = self._by_bytes.get(raw)
            if message is not None:
                self._by_bytes.move_to_end(raw)
                self.hits += 1
                return message
        message = self._parse_bytes(raw)
        with self._lock:
            kept = self._by_bytes.setdefault(raw, message)
            if kept is not message:  # another thread kept the same request meanwhile
                return kept
            self._converted[id(message)] = (message, None)
            self._held += len(raw)
            while self._held > self._budget:
                old_raw, old = self._by_bytes.popitem(last=False)
                self._held -= len(old_raw)
                del self._converted[id(old)]
        return message

    def record(self, message: Any) -> Record:
        """``message`` converted, once for a kept message."""
        with self._lock:
            entry = self._converted.get(id(message))
        # The identity check: an id is unique only among objects alive together.
        if entry is None or entry[0] is not message:
            return self._convert(message)
        record = entry[1]
        if record is None:
            record = self._convert(message)
            with self._lock:
                if id(message) in self._converted:  # still kept
                    self._converted[id(message)] = (message, record)
        return record
