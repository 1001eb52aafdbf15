"""Fixtures for the Python tests: unique names, and Node peers running the repository's package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import shmkit

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
NODE_BUILT = NODE is not None and (ROOT / "index.js").exists() and any(ROOT.glob("*.node"))

needs_node = pytest.mark.skipif(
    not NODE_BUILT and os.environ.get("SHMKIT_REQUIRE_NODE") != "1",
    reason="the Node package is not built (npm install) or node is missing",
)


@pytest.fixture
def name(request: pytest.FixtureRequest):
    """A fresh object name, removed (whatever its kind) after the test."""
    test = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:40]
    made = f"py-{test}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    yield made
    try:
        shmkit._native.Segment.unlink(made, None)
    except (FileNotFoundError, shmkit.ShmkitError):
        pass


class NodePeer:
    """A Node process running `body` (an async function body) with `shmkit` and `args` in scope;
    it prints lines to stdout, read with `line()`."""

    def __init__(self, body: str, *args: str) -> None:
        script = (
            f"const shmkit = require({str(ROOT / 'index.js')!r}); const args = process.argv.slice(1);\n"
            f"(async () => {{\n{textwrap.dedent(body)}\n}})().catch((e) => {{ console.error(e); process.exit(1) }})"
        )
        self.process = subprocess.Popen(
            [NODE or "node", "-e", script, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def line(self, timeout: float = 20) -> str:
        import selectors

        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            self.process.kill()
            raise TimeoutError("the Node peer said nothing")
        return self.process.stdout.readline().strip()

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout)
        if code != 0:
            print(self.process.stderr.read(), file=sys.stderr)
        return code

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def node():
    peers: list[NodePeer] = []

    def start(body: str, *args: str) -> NodePeer:
        peer = NodePeer(body, *args)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        if peer.process.poll() is None:
            peer.kill()


def python_peer(code: str, *args: str) -> subprocess.Popen:
    """Another Python process running `code` with `shmkit` imported and `args` in scope."""
    script = f"import sys, shmkit\nargs = sys.argv[1:]\n{textwrap.dedent(code)}"
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
