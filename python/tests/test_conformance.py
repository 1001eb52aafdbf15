"""The conformance vectors (conformance/*.json), through the Python binding: the same files the
Rust and TypeScript suites run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

import shmkit

VECTORS = Path(__file__).resolve().parents[2] / "conformance"
# Offsets of docs/CHANNELS.md and docs/TOPIC.md (the tests check the layout, so they spell it out).
CHANNEL = {"ended": 16, "tail": 64, "head": 128, "ring": 512}
PEERS = {"seen": 20, "roles": 320}
TOPIC = {"ring_at": 28, "tail": 64, "writing": 68, "head": 72, "published": 76}


def cases(file: str) -> list[dict]:
    return json.loads((VECTORS / file).read_text())["cases"]


def outcome(receive, ended) -> object:
    try:
        message = receive()
    except shmkit.ShmkitError as error:
        if error.code == "ERR_SHM_LAGGED":
            return {"error": error.code, "missed": error.missed}
        return error.code
    if message is not None:
        return {"message": message.hex()}
    return "ended" if ended() else "empty"


def put(view: memoryview, offset: int, value: int) -> None:
    view[offset : offset + 4] = struct.pack("<I", value)


@pytest.mark.parametrize("vector", cases("channel.json"), ids=lambda v: v["name"])
def test_channel_vectors(vector, name):
    channel = shmkit._native.Channel.create(name, vector["capacity"], 0)
    raw = shmkit._native.Segment.open(name, any_kind=True)
    view = memoryview(raw)
    ring = bytes.fromhex(vector["ring"])
    view[CHANNEL["ring"] : CHANNEL["ring"] + len(ring)] = ring
    for field in ("head", "tail", "ended"):
        put(view, CHANNEL[field], vector[field])
    got: list[object] = []
    while len(got) < len(vector["expect"]):
        result = outcome(channel.try_recv, lambda: channel.ended)
        got.append(result)
        if not isinstance(result, dict):
            break
    assert got == vector["expect"]
    view.release()
    raw.close()


@pytest.mark.parametrize("vector", cases("topic.json"), ids=lambda v: v["name"])
def test_topic_vectors(vector, name):
    topic = shmkit._native.Topic.create(name, vector["capacity"], 0, vector["slow"])
    raw = shmkit._native.Segment.open(name, any_kind=True)
    view = memoryview(raw)
    for field in ("tail", "writing", "head"):
        put(view, TOPIC[field], vector["start"]["tail"])
    put(view, TOPIC["published"], vector["start"]["published"])
    subscription = topic.subscribe()
    ring_at = struct.unpack("<I", view[TOPIC["ring_at"] : TOPIC["ring_at"] + 4])[0]
    ring = bytes.fromhex(vector["ring"])
    view[ring_at : ring_at + len(ring)] = ring
    for field in ("head", "writing", "tail"):
        put(view, TOPIC[field], vector[field])
    if "published" in vector:
        put(view, TOPIC["published"], vector["published"])
    got: list[object] = []
    while len(got) < len(vector["expect"]):
        result = outcome(subscription.try_recv, lambda: topic.ended)
        got.append(result)
        # A lag is reported and then receiving goes on; the end, nothing or damage stop.
        if not isinstance(result, dict):
            break
    assert got == vector["expect"]
    subscription.close()
    view.release()
    raw.close()


@pytest.mark.parametrize("vector", cases("peers.json"), ids=lambda v: v["name"])
def test_peers_vectors(vector, name):
    channel = shmkit.Channel.create(name, capacity=64)  # attach slot 0
    raw = shmkit._native.Segment.open(name, any_kind=True)  # slot 1
    handles = [shmkit.Channel.open(name) for _ in vector["slots"][2:]]  # slots 2, 3, ...
    for handle, state in zip(handles, vector["slots"][2:]):
        if state == "free":
            handle.close()
    view = memoryview(raw)
    for i, word in enumerate(vector["roles"]):
        put(view, PEERS["roles"] + 4 * i, word)
    put(view, PEERS["seen"], vector["seen"])
    report = channel.peers()
    got = {
        "peers": len(report["peers"]),
        "producers": report["producers"],
        "consumers": report["consumers"],
        "producersGone": report["producers_gone"],
        "consumersGone": report["consumers_gone"],
    }
    assert got == vector["expect"]
    view.release()
    for handle in (raw, channel, *handles):
        handle.close()
