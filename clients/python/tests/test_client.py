"""The Python client against the real broker (tokenbroker demo)."""

import http.server
import json
import threading
import time
import unittest
import urllib.request

from tokenbroker import BearerAuth, Token, TokenBrokerError, TokenSource, get_token

from _broker import Broker, closed_port_url, poll

ACTIONS = {"retrieved new token", "returned existing token", "refreshed existing token",
           "retrieved new token to replace expired token"}

broker = None


def setUpModule():
    global broker
    broker = Broker()


def tearDownModule():
    if broker is not None:
        broker.stop()


class GetTokenTest(unittest.TestCase):
    def test_named_credential(self):
        tok = get_token(broker.credential, url=broker.url)
        self.assertIsInstance(tok, Token)
        self.assertTrue(tok.access_token.startswith("eyJ"), "not a JWT")
        self.assertEqual(tok.credential_id, broker.credential)
        self.assertEqual(tok.token_type, "Bearer")
        self.assertIn(tok.action, ACTIONS)
        self.assertIsInstance(tok.expires_on, int)
        self.assertGreater(tok.seconds_left(), 0)
        # The secret stays out of what gets printed and logged.
        self.assertNotIn(tok.access_token, repr(tok))
        self.assertNotIn(tok.access_token, str(tok))

    def test_username_password(self):
        first = get_token(username=broker.user, password=broker.password, url=broker.url)
        again = get_token(username=broker.user, password=broker.password, url=broker.url)
        self.assertTrue(first.access_token)
        self.assertNotIn(broker.user, first.credential_id)
        self.assertEqual(again.credential_id, first.credential_id)
        # Within the demo's 3 s lifetime the cache answers, unless the
        # token is already inside its refresh threshold.
        if again.access_token == first.access_token:
            self.assertEqual(again.action, "returned existing token")

    def test_wrong_password(self):
        with self.assertRaises(TokenBrokerError) as cm:
            get_token(username=broker.user, password="not-the-password", url=broker.url)
        e = cm.exception
        self.assertEqual(e.status, 401)
        self.assertEqual(e.error, "invalid_grant")
        self.assertTrue(e.description)
        self.assertNotIn("not-the-password", str(e))

    def test_unknown_credential(self):
        with self.assertRaises(TokenBrokerError) as cm:
            get_token("no-such-credential", url=broker.url)
        self.assertEqual((cm.exception.status, cm.exception.error), (404, "unknown_credential"))

    def test_force_refresh_gets_a_new_token(self):
        before = get_token(broker.credential, url=broker.url)
        after = get_token(broker.credential, url=broker.url, force_refresh=True)
        self.assertNotEqual(after.access_token, before.access_token)
        self.assertNotEqual(after.action, "returned existing token")

    def test_a_claims_challenge_gets_a_new_token(self):
        before = get_token(broker.credential, url=broker.url)
        challenge = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
        after = get_token(broker.credential, url=broker.url, claims=challenge)
        self.assertNotEqual(after.access_token, before.access_token)
        with self.assertRaises(TokenBrokerError) as cm:
            get_token(broker.credential, url=broker.url, claims="not a JSON object")
        self.assertEqual((cm.exception.status, cm.exception.error), (400, "invalid_request"))

    def test_min_ttl_beyond_the_lifetime_is_refused(self):
        # The demo's tokens live 3 s: no token can stay valid an hour.
        with self.assertRaises(TokenBrokerError) as cm:
            get_token(broker.credential, url=broker.url, min_ttl=3600)
        self.assertEqual(cm.exception.status // 100, 4)

    def test_unreachable_broker(self):
        with self.assertRaises(TokenBrokerError) as cm:
            get_token(broker.credential, url=closed_port_url(), timeout=5)
        self.assertEqual((cm.exception.status, cm.exception.error), (503, "temporarily_unavailable"))
        self.assertIsInstance(cm.exception.__cause__, OSError)

    def test_arguments(self):
        for kwargs in ({}, {"credential": "a", "username": "u", "password": "p"}, {"username": "u"}):
            with self.assertRaises(ValueError):
                get_token(url=broker.url, **kwargs)
        with self.assertRaises(ValueError):
            get_token("a", url="ftp://127.0.0.1")


class TokenSourceTest(unittest.TestCase):
    def test_pushed_refresh(self):
        get_token(broker.credential, url=broker.url)  # the credential holds a token
        with TokenSource(broker.credential, url=broker.url, min_ttl=0) as source:
            first = poll(lambda: source.last_event_id)
            self.assertGreater(source.token().seconds_left(), 0)
            # A refresh the broker makes on its own, about every 3 s here,
            # arrives on the stream as a published event (a UUID, not the
            # synthesized id of a token the stream started with).
            def published():
                i = source.last_event_id
                return i if i != first and not i.startswith("current-") else None

            pushed = poll(published)
            self.assertRegex(pushed, r"^[0-9a-f]{8}-[0-9a-f]{4}-")
            tok = source.token()
            self.assertGreater(tok.seconds_left(), 0)
            self.assertEqual(tok.credential_id, broker.credential)
            # From the event, not from a request of its own: a request
            # would be answered from cache.
            self.assertNotEqual(tok.action, "returned existing token")
        self.assertFalse(source._thread.is_alive(), "the stream's thread outlived close()")
        with self.assertRaises(TokenBrokerError):
            source.token()

    def test_token_at_once(self):
        # Whether the stream or a request brings it, the first token()
        # gives a valid token.
        with TokenSource(broker.credential, url=broker.url, min_ttl=0) as source:
            tok = source.token()
            self.assertGreater(tok.seconds_left(), 0)
            self.assertNotIn(tok.access_token, repr(source))

    def test_unknown_credential(self):
        with TokenSource("no-such-credential", url=broker.url) as source:
            with self.assertRaises(TokenBrokerError) as cm:
                source.token()
            self.assertEqual(cm.exception.status, 404)


class BearerAuthTest(unittest.TestCase):
    def test_sets_the_header_from_a_source(self):
        with TokenSource(broker.credential, url=broker.url, min_ttl=0) as source:
            r = _Req()
            self.assertIs(BearerAuth(source)(r), r)
            self.assertRegex(r.headers["Authorization"], r"^Bearer eyJ[\w-]+\.[\w-]+\.[\w-]+$")
        tok = get_token(broker.credential, url=broker.url)
        r = BearerAuth(lambda: tok)(_Req())
        self.assertEqual(r.headers["Authorization"], "Bearer " + tok.access_token)

    def test_with_urllib_and_a_callable(self):
        with _FakeGateway() as fake:
            req = urllib.request.Request(fake.url + "/echo")
            BearerAuth(lambda: "abc.def.ghi")(req)
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.assertEqual(resp.read().decode(), "Bearer abc.def.ghi")
        with self.assertRaises(TypeError):
            BearerAuth(42)


class ReconnectTest(unittest.TestCase):
    """The stream's reconnect, against a gateway that drops it on purpose."""

    def test_reconnects_with_last_event_id(self):
        with _FakeGateway() as fake:
            with TokenSource("crm-prod", url=fake.url, min_ttl=0) as source:
                poll(lambda: source.last_event_id == "e2")
                self.assertEqual(fake.last_event_ids, [None, "e1"])
                self.assertEqual(source.token().access_token, "token-2")
            # close() ended the held stream.
            self.assertFalse(source._thread.is_alive())


class _Req:
    """What requests hands an auth hook: an object with a headers mapping."""

    def __init__(self):
        self.headers = {}


class _FakeGateway:
    """An /events that sends e1 and ends, then e2 and holds; /echo answers
    with the request's Authorization header."""

    def __init__(self):
        self.last_event_ids = []
        self.stop = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == "/echo":
                    body = (self.headers.get("Authorization") or "").encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                fake.last_event_ids.append(self.headers.get("Last-Event-ID"))
                n = len(fake.last_event_ids)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                ev = {"event_id": "e%d" % n, "credential_id": "crm-prod", "accesstoken": "token-%d" % n,
                      "token_type": "Bearer", "expires_on": str(int(time.time()) + 3600), "expires_in": 3600,
                      "action": "refreshed existing token", "refreshed_at": "2026-12-02T10:00:00Z"}
                self.wfile.write(("event: refreshed\nid: e%d\ndata: %s\n\n" % (n, json.dumps(ev))).encode())
                self.wfile.flush()
                if n == 1:
                    return  # HTTP/1.0: the connection, and the stream, end
                while not fake.stop.wait(0.05):
                    try:
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                    except OSError:
                        return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    unittest.main()
