"""The real broker for the tests: `tokenbroker demo`, with its built-in IdP.

TOKENBROKER_BIN names the binary; without it, it is built from this
checkout with `go build`. Everything listens on 127.0.0.1, on ports the
broker picks and prints.
"""

import os
import queue
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# The demo's tokens live this long: a refresh, pushed on /events, comes
# within a few seconds of asking.
LIFETIME = "3s"


class Broker:
    """A running `tokenbroker demo`: url, user, password, credential."""

    def __init__(self):
        self._dir = tempfile.mkdtemp(prefix="tokenbroker-py-")
        binary = os.environ.get("TOKENBROKER_BIN") or self._build()
        # A clean environment: a developer's NATS_URL or TOKENBROKER_CONFIG
        # must not point the test broker elsewhere.
        env = {k: os.environ[k] for k in ("PATH", "HOME", "TMPDIR", "SYSTEMROOT") if k in os.environ}
        self._stderr = open(os.path.join(self._dir, "broker.log"), "wb")
        self._proc = subprocess.Popen(
            [binary, "demo", "--nats-listen", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--lifetime", LIFETIME],
            cwd=self._dir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr)
        try:
            self._read_banner()
        except Exception:
            self.stop()
            raise

    def _build(self) -> str:
        out = os.path.join(self._dir, "tokenbroker")
        subprocess.run(["go", "build", "-o", out, "./cmd/tokenbroker"], cwd=_ROOT, check=True)
        return out

    def _read_banner(self) -> None:
        # The banner is read by a thread so that waiting for it is bounded.
        lines: "queue.Queue[str]" = queue.Queue()

        def pump():
            for raw in self._proc.stdout:
                lines.put(raw.decode("utf-8", "replace"))
            lines.put("")

        threading.Thread(target=pump, daemon=True).start()
        text = ""
        deadline = time.monotonic() + 60
        while "Press Ctrl-C to stop." not in text:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError("the broker printed no banner in 60 s:\n" + text + self.log())
            if line == "":
                raise RuntimeError("the broker exited:\n" + text + self.log())
            text += line

        def field(pattern: str) -> str:
            m = re.search(pattern, text)
            if not m:
                raise RuntimeError("no %r in the banner:\n%s" % (pattern, text))
            return m.group(1)

        self.user = field(r"demo user:\s+(\S+)")
        self.password = field(r"demo password:\s+(\S+)")
        self.credential = field(r"named credential:\s+(\S+)")
        self.url = "http://" + field(r"curl -s http://(\S+)/requesttoken")

    def log(self) -> str:
        self._stderr.flush()
        with open(self._stderr.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()
        self._stderr.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def closed_port_url() -> str:
    """The URL of a loopback port nothing listens on."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "http://127.0.0.1:%d" % port


def poll(condition, timeout: float = 20, every: float = 0.02):
    """condition()'s first true value, checked every `every` seconds for at
    most timeout seconds; AssertionError when it stays false."""
    deadline = time.monotonic() + timeout
    while True:
        v = condition()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("not so within %.0f s" % timeout)
        time.sleep(every)
