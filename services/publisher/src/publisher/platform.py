"""The Data Exchange platform's publishing API: OAuth2 client credentials and POST /events.

One token per container, refreshed shortly before it expires or after a 401. Answers are
sorted into published (201, and 409: the platform already has this id), transient (429, 5xx,
network: try again later) and permanent (400, 403: no retry can help).

A 4xx from the token endpoint is a credentials problem, not the event's (a deploy before the
secret is set, a rotation): it is transient, the secret is read again on the next try, and the
caller is told (`on_credentials_refused`) so that it shows.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import msgspec
import urllib3

from contracts.events import MinimalEvent
from servicekit import tracing
from servicekit.errors import PermanentError, TransientError

REFRESH_MARGIN_SECONDS = 60
# the platform's answer, as the trace's outcome of a POST (the status is in its http meta)
_OUTCOMES = {201: "created", 409: "duplicate", 401: "token_refused", 429: "retry"}


class TransientPlatformError(TransientError):
    """Try again later: the platform is busy, down or unreachable."""


class CredentialsRefusedError(TransientPlatformError):
    """The token endpoint refused our client credentials: fix or rotate the secret."""


class PermanentPlatformError(PermanentError):
    """The platform refused the event for good; the reason names the status, not the content."""


class ClientCredentials(msgspec.Struct, frozen=True):
    """The platform client's id and secret, as kept in Secrets Manager."""

    client_id: str
    client_secret: str


class _Token(msgspec.Struct):
    access_token: str
    expires_in: int = 3600
    token_type: str = "Bearer"  # noqa: S105 - a scheme name, not a secret


class PlatformClient:
    """Posts minimal events; thread-safe; caches its token."""

    def __init__(
        self,
        *,
        platform_url: str,
        token_url: str,
        credentials: Callable[[bool], ClientCredentials],
        timeout_seconds: float = 10.0,
        http: Any = None,
        on_credentials_refused: Callable[[int], None] = lambda _status: None,
        on_answer: Callable[[int, float], None] = lambda _status, _seconds: None,
    ) -> None:
        self._events_url = platform_url.rstrip("/") + "/events"
        self._token_url = token_url
        self._credentials = credentials
        self._on_refused = on_credentials_refused
        self._on_answer = on_answer  # (status, seconds) of each POST: latency and throttles
        self._reread_credentials = False
        self._http = http or urllib3.PoolManager(
            timeout=urllib3.Timeout(total=timeout_seconds), retries=False
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.tokens_fetched = 0

    def _fetch_token(self) -> str:
        creds = self._credentials(self._reread_credentials)
        basic = base64.b64encode(f"{creds.client_id}:{creds.client_secret}".encode()).decode()
        try:
            answer = self._http.request(
                "POST",
                self._token_url,
                body=urlencode({"grant_type": "client_credentials", "scope": "events/publish"}),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Authorization": f"Basic {basic}",
                },
            )
        except urllib3.exceptions.HTTPError as err:
            raise TransientPlatformError(
                f"token endpoint unreachable: {type(err).__name__}"
            ) from None
        if answer.status == 429 or answer.status >= 500:
            raise TransientPlatformError(f"token endpoint answered {answer.status}")
        if answer.status != 200:
            self._reread_credentials = True  # a rotated secret is picked up on the next try
            self._on_refused(int(answer.status))
            raise CredentialsRefusedError(
                f"token endpoint answered {answer.status}: the client credentials were refused"
            )
        self._reread_credentials = False
        token = msgspec.json.decode(answer.data, type=_Token)
        self._token = token.access_token
        self._expires_at = time.monotonic() + token.expires_in - REFRESH_MARGIN_SECONDS
        self.tokens_fetched += 1
        return token.access_token

    def _bearer(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires_at:
                return self._fetch_token()
            return self._token

    def publish(self, event: MinimalEvent) -> int:
        """POST the event; return 201 or 409 (both mean the platform has it), else raise."""
        body = msgspec.json.encode(event)
        for attempt in range(2):
            token = self._bearer(renew=attempt > 0)
            # urllib3 2 is not patched by the X-Ray SDK: the call gets its span and carries the
            # trace header by hand, so the platform's side can join the record's trace
            with tracing.span("platform POST /events", operation="platform_post") as span:
                span.put_http_meta("method", "POST")
                span.put_http_meta("url", self._events_url)
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
                trace_header = tracing.header()
                if trace_header:
                    headers["X-Amzn-Trace-Id"] = trace_header
                started = time.monotonic()
                try:
                    answer = self._http.request(
                        "POST", self._events_url, body=body, headers=headers
                    )
                except urllib3.exceptions.HTTPError as err:
                    span.add_fault_flag()
                    self._on_answer(0, time.monotonic() - started)
                    raise TransientPlatformError(
                        f"platform unreachable: {type(err).__name__}"
                    ) from None
                status = int(answer.status)
                span.put_http_meta("status", status)
                span.put_annotation(
                    "outcome", _OUTCOMES.get(status, "refused" if status < 500 else "retry")
                )
                self._on_answer(status, time.monotonic() - started)
                if status == 429 or status >= 500:
                    span.add_fault_flag()
            if status in (201, 409):
                return status
            if status == 401 and attempt == 0:
                continue  # expired or revoked: one fresh token, one more try
            if status == 429 or status >= 500:
                raise TransientPlatformError(f"platform answered {status}")
            raise PermanentPlatformError(f"platform answered {status} to POST /events")
        raise PermanentPlatformError("platform answered 401 to a fresh token")
