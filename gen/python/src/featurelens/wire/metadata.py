"""gRPC metadata keys that both sides of the wire agree on (SDK, services and the kit)."""

from __future__ import annotations

import uuid

#: The id of one request, sent by a caller, echoed in the server's initial metadata, written on
#: every log line the request causes and passed on to the services it calls.
REQUEST_ID_KEY = "x-request-id"


def new_request_id() -> str:
    """A fresh request id: what a caller sends, or a server makes up when the caller sent none."""
    return uuid.uuid4().hex[:16]
