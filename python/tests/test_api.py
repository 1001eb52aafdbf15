"""The Python API on its own: semantics, bad input, damaged memory, interruption."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

import shmkit

from .conftest import python_peer


def test_segments_wait_notify_and_buffers(name):
    seg = shmkit.Segment.create(name, size=4096)
    assert (seg.name, seg.size, seg.created) == (name, 4096, True)
    view = seg.buf
    view[0:4] = b"\x07\x00\x00\x00"
    assert seg.wait(0, 5, timeout=0) == "not-equal"
    assert seg.wait(0, 7, timeout=0.02) == "timed-out"
    assert seg.notify(0) == 0
    with pytest.raises(BufferError) as refused:
        seg.close()
    assert refused.value.code == "EBUSY"
    view.release()
    again = shmkit.Segment.open(name)
    assert bytes(again.buf[0:4]) == b"\x07\x00\x00\x00"
    again.close()
    seg.close()
    assert seg.closed
    with pytest.raises(shmkit.ShmkitError) as closed:
        _ = seg.buf
    assert closed.value.code == "ERR_SHM_CLOSED"


def test_locks_are_not_recursive_and_try_never_waits(name):
    seg = shmkit.Segment.create(name, size=4096)
    placed = shmkit.Mutex.at(seg, 64)
    assert seg.mutex.acquire(blocking=False)
    assert not seg.mutex.acquire(blocking=False), "busy, even for its holder"
    with pytest.raises(shmkit.ShmkitError) as deadlock:
        seg.mutex.acquire()
    assert deadlock.value.code == "EDEADLK"
    with placed as guard:
        assert guard.owner_died is False
    seg.mutex.release()
    with pytest.raises(shmkit.ShmkitError) as not_owner:
        seg.mutex.release()
    assert not_owner.value.code == "EPERM"
    seg.close()


def test_bad_input_gets_coded_exceptions(name):
    cases = [
        (lambda: shmkit.Segment.create(name, size=0), ValueError, "ERR_OUT_OF_RANGE"),
        (lambda: shmkit.Segment.create("bad/name", size=64), ValueError, "ERR_INVALID_ARG_VALUE"),
        (lambda: shmkit.Segment.create("x" * 300, size=64), ValueError, "ENAMETOOLONG"),
        (lambda: shmkit.Segment.open(name + "-missing"), FileNotFoundError, "ENOENT"),
        (lambda: shmkit.Channel.create(name, codec="v8"), ValueError, "ERR_INVALID_ARG_VALUE"),
        (lambda: shmkit.Channel.create(name, codec="xml"), ValueError, "ERR_INVALID_ARG_VALUE"),
        (lambda: shmkit.Mutex.at(shmkit.Segment, 3), ValueError, "ERR_OUT_OF_RANGE"),
        (lambda: shmkit.Topic.create(name, slow="drop"), ValueError, "ERR_INVALID_ARG_VALUE"),
        (lambda: shmkit.SharedMap.create(name, capacity=10, evict="mru"), ValueError, "ERR_INVALID_ARG_VALUE"),
    ]
    for call, kind, code in cases:
        with pytest.raises(kind) as raised:
            call()
        assert raised.value.code == code, call
    seg = shmkit.Segment.create(name, size=4096)
    for offset in (4096, 2, -4):
        with pytest.raises((ValueError, OverflowError, shmkit.ShmkitError)):
            seg.wait(offset, 0, timeout=0)
    with pytest.raises(ValueError) as negative:
        seg.wait(0, 0, timeout=-1)
    assert negative.value.code == "ERR_OUT_OF_RANGE"
    with pytest.raises(shmkit.ShmkitError) as wrong_kind:
        shmkit.Channel.open(name)
    assert wrong_kind.value.code == "ERR_SHM_WRONG_KIND"
    ch = shmkit.Channel.create(name + "-ch", capacity=64, codec="json")
    with pytest.raises(ValueError) as too_big:
        ch.send("x" * 100)
    assert too_big.value.code == "ERR_OUT_OF_RANGE"
    with pytest.raises(TypeError) as unencodable:
        ch.send({1j})
    assert unencodable.value.code == "ERR_SHM_ENCODE"
    with pytest.raises(TypeError):
        shmkit.SharedMap.create(name + "-m", capacity=4).set(1, "x")  # type: ignore[arg-type]
    shmkit.Channel.unlink(name + "-ch")
    shmkit.SharedMap.unlink(name + "-m")
    seg.close()


def test_a_scribbled_channel_map_and_topic_give_exceptions_never_a_crash(name):
    channel = shmkit.Channel.create(name + "-c", capacity=1024, codec="json")
    cache = shmkit.SharedMap.create(name + "-m", capacity=32)
    topic = shmkit.Topic.create(name + "-t", capacity=1024, subscribers=4)
    sub = topic.subscribe()
    raws = [shmkit._native.Segment.open(n, any_kind=True) for n in (name + "-c", name + "-m", name + "-t")]
    views = [memoryview(raw).cast("I") for raw in raws]
    rng = random.Random(20261202)
    outcomes = {"ok": 0}
    for trial in range(600):
        view = views[trial % 3]
        index = rng.randrange(8, len(view))  # the magic and geometry are checked at open
        saved = view[index]
        view[index] = rng.getrandbits(32)
        key = f"k{trial % 40}"
        for op in (
            lambda t=trial: channel.try_send({"t": t}),
            channel.try_recv,
            lambda t=trial, k=key: cache.set(k, t),
            lambda k=key: cache.get(k),
            lambda: len(cache.items()),
            lambda t=trial: topic.try_publish(t),
            sub.try_recv,
        ):
            try:
                op()
                outcomes["ok"] += 1
            except (shmkit.ShmkitError, ValueError, TimeoutError) as error:
                code = getattr(error, "code", None)
                assert isinstance(code, str), error
                outcomes[code] = outcomes.get(code, 0) + 1
        view[index] = saved
    assert outcomes["ok"] > 0
    for view, raw in zip(views, raws):
        view.release()
        raw.close()
    for suffix in ("-c", "-m", "-t"):
        shmkit._native.Segment.unlink(name + suffix, None)


def test_maps_behave_like_dicts_and_update_atomically(name):
    cache = shmkit.SharedMap.create(name, capacity=100)
    cache["a"] = {"n": 1}
    cache.set("ttl", 1, ttl=0.05)
    assert cache["a"] == {"n": 1} and "a" in cache and cache.get("zz", 5) == 5
    assert cache.update("a", lambda v: {"n": v["n"] + 1}) == {"n": 2}
    assert cache.update("a", lambda v: None) is None and "a" not in cache
    with pytest.raises(ZeroDivisionError):
        cache.update("ttl", lambda v: 1 / 0)
    assert cache.get("ttl") == 1, "a failing update changes nothing"
    time.sleep(0.08)
    assert cache.get("ttl") is None
    with pytest.raises(KeyError):
        del cache["missing"]
    peers = [
        python_peer("m = shmkit.SharedMap.open(args[0])\nfor _ in range(500): m.increment('n')", name) for _ in range(3)
    ]
    for _ in range(500):
        cache.increment("n")
    assert all(p.wait(30) == 0 for p in peers)
    assert cache["n"] == 2000
    cache.close()


def test_topics_fan_out_and_lag(name):
    topic = shmkit.Topic.create(name, capacity=256, codec="bytes", slow="overwrite")
    sub = topic.subscribe()
    for n in range(25):
        assert topic.try_publish(bytes([n]) * 16)
    with pytest.raises(shmkit.ShmkitError) as lagged:
        sub.recv()
    assert lagged.value.code == "ERR_SHM_LAGGED"
    rest = [m[0] for m in iter(sub.try_recv, None)]
    assert lagged.value.missed + len(rest) == 25
    topic.end()
    assert list(sub) == []


def test_a_cancelled_recv_async_takes_nothing(name):
    ch = shmkit.Channel.create(name, capacity=1024, codec="json")

    async def main():
        task = asyncio.create_task(ch.recv_async())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ch.send("after")
        await asyncio.sleep(0.3)  # the executor's wait ends within a slice
        return ch.try_recv()

    assert asyncio.run(main()) == "after"


def test_asyncio_send_waits_for_room_without_blocking_the_loop(name):
    ch = shmkit.Channel.create(name, capacity=64, codec="bytes")

    async def main():
        for _ in range(100):
            if not ch.try_send(b"x" * 20):
                break
        sending = asyncio.create_task(ch.send_async(b"y" * 20, timeout=5))
        await asyncio.sleep(0.05)
        assert not sending.done()
        ch.recv()
        await asyncio.wait_for(sending, 2)
        with pytest.raises(TimeoutError):
            await ch.send_async(b"z" * 60, timeout=0.1)

    asyncio.run(main())


def test_ctrl_c_interrupts_a_blocking_wait(name):
    seg = shmkit.Segment.create(name, size=4096)
    waiter = python_peer(
        """
        seg = shmkit.Segment.open(args[0])
        print("waiting", flush=True)
        try:
            seg.wait(0, 0)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
        name,
    )
    assert waiter.stdout.readline().strip() == "waiting"
    time.sleep(0.2)
    waiter.send_signal(signal.SIGINT)
    assert waiter.stdout.readline().strip() == "interrupted"
    assert waiter.wait(5) == 0
    seg.close()


def test_take_ack_nack_lease_dead_letter_and_a_killed_taker(name):
    channel = shmkit.Channel.create(name, capacity=4096, codec="json")
    dead = shmkit.Channel.create(name + "-dead", capacity=4096, codec="json")
    try:
        channel.send({"job": 1})
        # A taker process SIGKILLed holding the job: the next take gets it, delivery 2.
        taker = python_peer(
            """
            ch = shmkit.Channel.open(args[0])
            job = ch.take(timeout=5)
            print(job.value["job"], job.deliveries, flush=True)
            import time; time.sleep(60)
            """,
            name,
        )
        assert taker.stdout.readline().split() == ["1", "1"]
        taker.send_signal(signal.SIGKILL)
        taker.wait()
        job = channel.take(timeout=10)
        assert (job.value, job.deliveries) == ({"job": 1}, 2)
        assert job.ack() is True
        with pytest.raises(shmkit.ShmkitError) as twice:
            job.ack()
        assert twice.value.code == "ERR_SHM_NOT_LOCKED"
        # A lease that ends: delivered again, the late ack refused.
        channel.send({"job": 2})
        first = channel.take(timeout=5, lease=0.1)
        second = channel.take(timeout=5, lease=0.1)
        assert second.deliveries == 2 and first.ack() is False and second.ack() is True
        # `with` gives back what was not acknowledged; past max_deliveries: the dead letter.
        channel.send({"job": 3})
        for delivery in (1, 2):
            with channel.take(timeout=5, max_deliveries=2, dead_letter=dead) as job:
                assert job.deliveries == delivery
        with pytest.raises(TimeoutError):
            channel.take(timeout=0.3, max_deliveries=2, dead_letter=dead)
        assert dead.recv(timeout=1) == {"job": 3}
        # The end: once drained and nothing is in flight.
        channel.end()
        with pytest.raises(shmkit.ShmkitError) as ended:
            channel.take(timeout=5)
        assert ended.value.code == "ERR_SHM_CHANNEL_ENDED"
        for lease in (0, 1e-9, 1e20, float("nan")):
            with pytest.raises(ValueError):
                channel.take(lease=lease)
    finally:
        for ch in (channel, dead):
            ch.close()
        for leftover in (name + "-dead", name + ".inflight", name + "-dead.inflight"):
            try:
                shmkit._native.Segment.unlink(leftover, None)
            except (FileNotFoundError, shmkit.ShmkitError):
                pass
