"""TokenSource: a named credential's token, kept current by /events."""

import http.client
import json
import random
import socket
import ssl
import threading
import urllib.parse
from typing import Optional

from ._client import DEFAULT_URL, Token, TokenBrokerError, _connect, _split_url, get_token

# The gateway sends a keep-alive comment every 15 s: a stream silent for
# three of them is dead, whatever TCP thinks.
_READ_TIMEOUT = 45.0
# Reconnecting backs off from the first to the last, doubling, with jitter
# so that many clients of one restarted broker do not come back together.
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0


class TokenSource:
    """A valid token of one named credential, whenever asked.

    A background thread reads the gateway's GET /events?credential=NAME
    stream, which starts with the credential's current token and then
    brings each new one as the broker gets it, so token() usually answers
    without a request. When the stream has brought no token yet, or the one
    it has is within min_ttl seconds of expiry (the broker or the stream is
    down), token() asks with get_token instead.

    The stream reconnects after any failure with a backoff (0.5 s doubling
    to 30 s, with jitter), sending Last-Event-ID so that the gateway replays
    what was missed. close() stops it; a TokenSource is also a context
    manager. Safe to use from several threads.
    """

    def __init__(
        self,
        credential: str,
        url: str = DEFAULT_URL,
        min_ttl: int = 60,
        *,
        timeout: float = 10,
        ssl_context: Optional[ssl.SSLContext] = None,
    ):
        if not credential:
            raise ValueError("a TokenSource needs a named credential")
        _split_url(url)  # a bad URL is the caller's error now, not the thread's later
        self.credential = credential
        self.url = url
        self.min_ttl = min_ttl
        self.timeout = timeout
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._token: Optional[Token] = None
        self._last_event_id: Optional[str] = None
        self._last_failure: Optional[TokenBrokerError] = None
        self._conn: Optional[http.client.HTTPConnection] = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokenbroker-events-" + credential, daemon=True)
        self._thread.start()

    # The token.

    def token(self) -> Token:
        """A token valid for more than min_ttl seconds.

        Raises TokenBrokerError when it has to ask the broker and that
        fails, and after close().
        """
        if self._closed.is_set():
            raise TokenBrokerError(400, "invalid_request", "the TokenSource is closed")
        with self._lock:
            tok = self._token
        if tok is not None and tok.seconds_left() > self.min_ttl:
            return tok
        tok = get_token(self.credential, url=self.url, min_ttl=self.min_ttl or None,
                        timeout=self.timeout, ssl_context=self._ssl_context)
        self._offer(tok)
        return tok

    @property
    def last_event_id(self) -> Optional[str]:
        """The id of the last event the stream brought; None before any."""
        with self._lock:
            return self._last_event_id

    @property
    def last_failure(self) -> Optional[TokenBrokerError]:
        """The last token.failed event of the credential (a refresh that
        failed for good, such as invalid_client), None if none came since
        the last token; its status is 0, since an event is no HTTP answer.
        Informational: token() still answers while the token it has is
        valid."""
        with self._lock:
            return self._last_failure

    def _offer(self, tok: Token) -> None:
        # The later-expiring token wins: a token fetched by token() and one
        # pushed at the same moment are both current.
        with self._lock:
            if self._token is None or tok.expires_on >= self._token.expires_on:
                self._token = tok
                self._last_failure = None

    # Closing.

    def close(self) -> None:
        """Stop the stream and wait (briefly) for its thread."""
        self._closed.set()
        with self._lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            # Wakes the reader blocked in recv: shutdown, unlike close,
            # takes effect on a socket another thread is reading.
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(self.timeout)

    def __enter__(self) -> "TokenSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return "TokenSource(credential=%r, url=%r, min_ttl=%r)" % (self.credential, self.url, self.min_ttl)

    # The stream.

    def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._closed.is_set():
            if self._stream():
                delay = _BACKOFF_FIRST  # it was up: the next failure is new
            if self._closed.wait(delay * random.uniform(0.5, 1.0)):
                return
            delay = min(delay * 2, _BACKOFF_MAX)

    def _stream(self) -> bool:
        """Read one connection of the stream; True if it was established."""
        conn, prefix = _connect(self.url, self.timeout, self._ssl_context)
        try:
            # Connected before close() can see it, so that close() always
            # finds a socket to shut down.
            conn.connect()
            with self._lock:
                if self._closed.is_set():
                    return False
                self._conn = conn
                last = self._last_event_id
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last:
                headers["Last-Event-ID"] = last
            conn.request("GET", prefix + "/events?credential=" + urllib.parse.quote(self.credential, safe=""),
                         headers=headers)
            resp = conn.getresponse()
            if resp.status != 200:
                resp.read()
                return False
            if conn.sock is not None:
                conn.sock.settimeout(max(_READ_TIMEOUT, self.timeout))
            self._read(resp)
            return True
        except (OSError, http.client.HTTPException, ValueError):
            return False
        finally:
            with self._lock:
                self._conn = None
            conn.close()

    def _read(self, resp: http.client.HTTPResponse) -> None:
        """Parse Server-Sent Events until the stream ends."""
        event, data, event_id = "", [], None
        while not self._closed.is_set():
            raw = resp.readline()
            if not raw:
                return  # the end of the stream
            line = raw.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    self._dispatch(event or "message", "\n".join(data), event_id)
                event, data, event_id = "", [], None
                continue
            if line.startswith(":"):
                continue  # a comment: keep-alive, or why the stream ends
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                event_id = value

    def _dispatch(self, event: str, data: str, event_id: Optional[str]) -> None:
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if event == "refreshed":
            try:
                self._offer(Token._from_json(doc))
            except (ValueError, TypeError):
                return
        elif event == "failed" and isinstance(doc, dict):
            with self._lock:
                self._last_failure = TokenBrokerError(
                    0, doc.get("error") or "", doc.get("error_description") or "")
        if event_id:
            with self._lock:
                self._last_event_id = event_id
