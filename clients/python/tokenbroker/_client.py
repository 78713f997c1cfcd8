"""get_token, Token and TokenBrokerError: one request to the HTTP gateway."""

import http.client
import json
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Optional, Tuple

DEFAULT_URL = "http://127.0.0.1:5000"

# The OAuth error codes the client gives to failures of its own, the ones
# the broker gives over NATS for the same failures.
_UNAVAILABLE = "temporarily_unavailable"
_SERVER_ERROR = "server_error"
_INVALID_REQUEST = "invalid_request"


class TokenBrokerError(Exception):
    """A token request that failed.

    status is the HTTP status, the broker's code: 400 invalid request, 401
    the IdP rejected the credentials, 404 unknown credential, 429 too many
    refused sign-ins, 502 the IdP (or the broker) answered with something
    unusable, 503 the IdP is unreachable or throttling, 504 no answer in
    time. error and description are the OAuth error and its description,
    the IdP's own for a 401. retry_after is the seconds to wait before
    asking again, when the broker said (503, 429).

    Failures to reach the broker raise it too, as the Go client does: 503
    temporarily_unavailable when the connection fails (refused, reset, no
    such host), 504 temporarily_unavailable when no answer came within the
    timeout, 502 server_error when the answer is not the broker's JSON. The
    underlying exception is chained (__cause__).
    """

    def __init__(self, status: int, error: str, description: str = "", retry_after: Optional[int] = None):
        super().__init__(status, error, description)
        self.status = status
        self.error = error
        self.description = description
        self.retry_after = retry_after

    def __str__(self) -> str:
        if self.description:
            return "tokenbroker: %d %s: %s" % (self.status, self.error, self.description)
        return "tokenbroker: %d %s" % (self.status, self.error)


@dataclass(frozen=True)
class Token:
    """An access token as the broker hands it out.

    expires_on is Unix seconds. The token is left out of repr() and str(),
    so that logging a Token does not log the secret.
    """

    access_token: str = field(repr=False)
    expires_on: int
    token_type: str = "Bearer"
    credential_id: str = ""
    action: str = ""

    def seconds_left(self, now: Optional[float] = None) -> float:
        """Seconds until the token expires; negative once it has."""
        return self.expires_on - (time.time() if now is None else now)

    @classmethod
    def _from_json(cls, doc: dict) -> "Token":
        # Replies and refreshed events share these names: accesstoken (the
        # original helper's) and expires_on as a string of Unix seconds.
        access = doc.get("accesstoken")
        if not isinstance(access, str) or not access:
            raise ValueError("no accesstoken")
        return cls(
            access_token=access,
            expires_on=int(doc.get("expires_on")),
            token_type=doc.get("token_type") or "Bearer",
            credential_id=doc.get("credential_id") or "",
            action=doc.get("action") or "",
        )


def _split_url(url: str) -> Tuple[str, str, Optional[int], str]:
    """scheme, host, port and path prefix of the gateway's base URL."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError("url must be http:// or https:// and name a host: %r" % url)
    return u.scheme, u.hostname, u.port, u.path.rstrip("/")


def _connect(url: str, timeout: float, ssl_context: Optional[ssl.SSLContext]):
    """An http.client connection to the gateway, and its path prefix.

    http.client, not urllib: no proxy from the environment is used (the
    gateway answers only its own Host, which a proxy would not keep), and
    the stream's reader can be interrupted through the socket.
    """
    scheme, host, port, prefix = _split_url(url)
    if scheme == "https":
        ctx = ssl_context or ssl.create_default_context()
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx), prefix
    return http.client.HTTPConnection(host, port, timeout=timeout), prefix


def _error_from_response(status: int, body: bytes, retry_after_header: Optional[str]) -> TokenBrokerError:
    error, description, retry_after = "", "", None
    try:
        doc = json.loads(body)
        error = doc.get("error") or ""
        description = doc.get("error_description") or ""
        if isinstance(doc.get("retry_after"), int):
            retry_after = doc["retry_after"]
    except (ValueError, AttributeError):
        pass
    if retry_after is None and retry_after_header and retry_after_header.isdigit():
        retry_after = int(retry_after_header)
    if not error:
        # Not the broker's error document: something else answered.
        error = _SERVER_ERROR if status >= 500 else _INVALID_REQUEST
        description = description or "HTTP %d without the broker's error document" % status
    return TokenBrokerError(status, error, description, retry_after)


def _unreachable(url: str, exc: BaseException) -> TokenBrokerError:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return TokenBrokerError(504, _UNAVAILABLE, "no answer from the broker at %s in time" % url)
    return TokenBrokerError(503, _UNAVAILABLE, "cannot reach the broker at %s: %s" % (url, exc or exc.__class__.__name__))


def get_token(
    credential: Optional[str] = None,
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
    url: str = DEFAULT_URL,
    min_ttl: Optional[int] = None,
    force_refresh: bool = False,
    claims: Optional[str] = None,
    timeout: float = 10,
    ssl_context: Optional[ssl.SSLContext] = None,
) -> Token:
    """Ask the broker's HTTP gateway (POST {url}/requesttoken) for a token.

    Give either credential, a named credential, or username and password,
    a pass-through request of the default profile. min_ttl asks for a token
    that stays valid at least that many seconds; force_refresh skips the
    broker's cache (after a resource refused the cached token). claims is a
    claims challenge a resource answered with (WWW-Authenticate's claims,
    base64 or decoded JSON): the broker skips its cache and asks the IdP
    with it. timeout
    bounds connecting and each read, in seconds. ssl_context verifies an
    https gateway (default: the system's trust store).

    Raises TokenBrokerError on any failure, ValueError on arguments that
    ask for nothing sensible.
    """
    if (credential is None) == (username is None):
        raise ValueError("give either credential or username and password")
    if username is not None and password is None:
        raise ValueError("a username needs its password")
    body: dict = {"credential": credential} if credential is not None else {"username": username, "password": password}
    if min_ttl is not None:
        body["min_ttl"] = int(min_ttl)
    if force_refresh:
        body["force_refresh"] = True
    if claims:
        body["claims"] = claims
    data = json.dumps(body).encode("utf-8")

    conn, prefix = _connect(url, timeout, ssl_context)
    try:
        try:
            conn.request("POST", prefix + "/requesttoken", body=data,
                         headers={"Content-Type": "application/json", "Accept": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise _unreachable(url, e) from e
        if resp.status != 200:
            raise _error_from_response(resp.status, payload, resp.getheader("Retry-After"))
        try:
            return Token._from_json(json.loads(payload))
        except (ValueError, TypeError, AttributeError) as e:
            raise TokenBrokerError(502, _SERVER_ERROR, "the broker's answer is not a token reply") from e
    finally:
        conn.close()
