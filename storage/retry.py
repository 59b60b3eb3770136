"""Which errors are infrastructure hiccups worth retrying (network, throttling, a lost worker)."""

from __future__ import annotations

PERMANENT_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
TRANSIENT_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ResponseStreamingError",
        "KilledWorker",
        "CommClosedError",
    }
)
TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "RequestTimeout",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
    }
)


def is_transient(exc: BaseException | None) -> bool:
    """True for errors a retry can fix; False for bad input and bugs (retrying those wastes time)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (TimeoutError, ConnectionError)):
            return True
        if isinstance(exc, OSError) and not isinstance(exc, PERMANENT_OS_ERRORS):
            return True
        if type(exc).__name__ in TRANSIENT_NAMES:
            return True
        response = getattr(exc, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            if code in TRANSIENT_S3_CODES:
                return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False
