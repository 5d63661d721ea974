"""A running `tollgate serve --demo` for the SDK tests: its own directory and database, a port
chosen by the OS, and keys made with the CLI. Needs TOLLGATE_BIN (scripts/test.sh sets it)."""

import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

CONFIG = """
[[providers]]
name = "down"
base_url = "http://127.0.0.1:1/v1"
models = ["o3-mini"]
"""


class Tollgate:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        self.env = {"PATH": os.environ.get("PATH", ""), "HOME": workdir, "USER": "sdk-tests"}
        with open(os.path.join(workdir, "tollgate.toml"), "w") as f:
            f.write(CONFIG)
        self.server = subprocess.Popen(
            [binary, "serve", "--demo", "--listen", "127.0.0.1:0"],
            cwd=workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        deadline = time.time() + 30
        self.base_url = None
        self.admin_key = None
        while time.time() < deadline:
            line = self.server.stdout.readline()
            if not line:
                break
            admin = re.search(r"(sk-admin-[A-Za-z0-9]+)", line)
            if admin:
                self.admin_key = admin.group(1)
            found = re.match(r"Tollgate listening on (http://\S+)", line)
            if found:
                self.base_url = found.group(1) + "/v1"
                break
        if self.base_url is None:
            self.server.kill()
            raise RuntimeError("tollgate serve did not start")

    def cli(self, *args):
        done = subprocess.run([self.binary, *args], cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"tollgate {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def new_key(self, name, *extra):
        """A key made with the CLI; it works the moment the command returns."""
        return json.loads(self.cli("keys", "create", "--name", name, "--json", *extra))

    def events(self, key_id):
        """The key's stored usage events, newest first."""
        return json.loads(self.cli("usage", "--events", "--key", key_id, "--limit", "100", "--json"))["data"]

    def event(self, key_id, request_id, timeout=5):
        """The usage event of one request, once stored: the metering writer stores events in
        batches, off the request path (within 50 ms when idle)."""
        deadline = time.time() + timeout
        while True:
            found = [e for e in self.events(key_id) if e["request_id"] == request_id]
            if found or time.time() > deadline:
                assert len(found) == 1, f"{len(found)} events for {request_id}"
                return found[0]
            time.sleep(0.05)

    def stop(self):
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.server.kill()


@pytest.fixture(scope="session")
def tollgate():
    binary = os.environ.get("TOLLGATE_BIN")
    if not binary:
        pytest.fail("set TOLLGATE_BIN to the tollgate binary (scripts/test.sh does)")
    with tempfile.TemporaryDirectory() as workdir:
        server = Tollgate(binary, workdir)
        try:
            yield server
        finally:
            server.stop()
