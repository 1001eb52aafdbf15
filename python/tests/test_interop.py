"""Python and Node on the same segments, locks, channels, maps and topics, as real processes."""

from __future__ import annotations

import asyncio
import signal

import pytest

import shmkit

from .conftest import needs_node, python_peer

pytestmark = needs_node


def test_one_counter_incremented_by_node_and_python_under_one_mutex_ends_exact(name, node):
    rounds = 20_000
    seg = shmkit.Segment.create(name, size=4096)
    peer = node(
        """
        const seg = shmkit.Segment.open(args[0]); const words = new Uint32Array(seg.buffer)
        console.log('ready')
        for (let i = 0; i < Number(args[1]); i++) { const guard = seg.mutex.lock(); words[0]++; guard.unlock() }
        seg.close()
        """,
        name,
        str(rounds),
    )
    assert peer.line() == "ready"
    counter = seg.buf.cast("I")
    for _ in range(rounds):
        with seg.mutex:
            counter[0] += 1
    assert peer.wait() == 0
    assert counter[0] == 2 * rounds
    counter.release()
    seg.close()


def test_json_messages_both_ways_exactly_once_and_in_order(name, node):
    to_node = shmkit.Channel.create(name + "-a", capacity=4096, codec="json")
    to_python = shmkit.Channel.create(name + "-b", capacity=4096, codec="json")
    try:
        peer = node(
            """
            const inbox = shmkit.Channel.open(args[0]), outbox = shmkit.Channel.open(args[1])
            for await (const m of inbox) outbox.send({ echo: m, seen: m.n * 2 }, { timeout: 20000 })
            outbox.end()
            """,
            name + "-a",
            name + "-b",
        )
        sent = [{"n": n, "text": "é" * (n % 7), "list": [n, None, True]} for n in range(2000)]
        received = []
        for message in sent:
            to_node.send(message, timeout=20)
            while (reply := to_python.try_recv()) is not None:
                received.append(reply)
        to_node.end()
        received.extend(to_python)  # until Node ends its side
        assert peer.wait() == 0
        assert received == [{"echo": m, "seen": m["n"] * 2} for m in sent]
    finally:
        for suffix in ("-a", "-b"):
            shmkit.Channel.unlink(name + suffix)


def test_json_is_byte_for_byte_what_node_writes(name, node):
    ch = shmkit.Channel.create(name, capacity=4096, codec="bytes")
    peer = node(
        """
        const ch = shmkit.Channel.open(args[0], { codec: 'json' })
        ch.send({ a: [1, 2.5, 'x'], b: null, 'é': true })
        """,
        name,
    )
    assert peer.wait() == 0
    data = ch.recv(timeout=5)
    assert data == shmkit._encode("json", {"a": [1, 2.5, "x"], "b": None, "é": True})


def test_a_python_holder_killed_is_taken_over_by_node_with_owner_died(name, node):
    seg = shmkit.Segment.create(name, size=4096)
    holder = python_peer(
        """
        seg = shmkit.Segment.open(args[0])
        seg.mutex.acquire()
        print("holding", flush=True)
        import time; time.sleep(60)
        """,
        name,
    )
    assert holder.stdout.readline().strip() == "holding"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    peer = node(
        """
        const seg = shmkit.Segment.open(args[0]); const guard = seg.mutex.lock({ timeout: 10000 })
        console.log(JSON.stringify({ ownerDied: guard.ownerDied })); guard.unlock()
        """,
        name,
    )
    assert peer.line() == '{"ownerDied":true}'
    assert peer.wait() == 0
    seg.close()


def test_a_node_holder_killed_is_taken_over_by_python_with_owner_died(name, node):
    seg = shmkit.Segment.create(name, size=4096)
    peer = node(
        """
        const seg = shmkit.Segment.open(args[0]); seg.mutex.lock(); console.log('holding')
        setInterval(() => {}, 1000) // stays alive, holding the lock, until killed
        """,
        name,
    )
    assert peer.line() == "holding"
    assert seg.mutex.acquire(timeout=0.1) is False  # alive: never robbed
    peer.kill()
    assert seg.mutex.acquire(timeout=10) is True
    assert seg.mutex.owner_died is True
    seg.mutex.release()
    with seg.mutex as guard:
        assert guard.owner_died is False
    seg.close()


def test_a_numpy_array_over_buf_sees_node_writes_without_a_copy(name, node):
    numpy = pytest.importorskip("numpy")
    seg = shmkit.Segment.create(name, size=1 << 20)
    array = numpy.frombuffer(seg.buf, dtype=numpy.float64)
    assert not array.flags.owndata
    peer = node(
        """
        const seg = shmkit.Segment.open(args[0]); const values = new Float64Array(seg.buffer)
        for (let i = 0; i < values.length; i++) values[i] = i * 0.5
        const words = new Int32Array(seg.buffer); Atomics.store(words, 0, 0)
        console.log('written')
        """,
        name,
    )
    assert peer.line() == "written"
    assert peer.wait() == 0
    expected = numpy.arange(array.size) * 0.5
    expected[0] = 0.0
    assert numpy.array_equal(array[1:], expected[1:])
    array[5] = 42.0  # and Node sees Python's writes
    check = node(
        "const seg = shmkit.Segment.open(args[0]); console.log(new Float64Array(seg.buffer)[5])",
        name,
    )
    assert check.line() == "42"
    del array
    seg.close()


def test_asyncio_receives_while_node_sends_and_the_loop_stays_free(name, node):
    ch = shmkit.Channel.create(name, capacity=1024, codec="json")

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        clock = asyncio.create_task(ticker())
        peer = node(
            """
            const ch = shmkit.Channel.open(args[0])
            for (let i = 0; i < 300; i++) { await ch.sendAsync({ i }); if (i % 50 === 0) await new Promise((r) => setTimeout(r, 20)) }
            ch.end()
            """,
            name,
        )
        got = [m["i"] async for m in ch]
        clock.cancel()
        assert peer.wait() == 0
        return got, ticks

    got, ticks = asyncio.run(main())
    assert got == list(range(300))
    assert ticks > 5, "the event loop kept running while receivers waited"


def test_maps_and_topics_are_shared_with_node(name, node):
    cache = shmkit.SharedMap.create(name + "-m", capacity=100)
    topic = shmkit.Topic.create(name + "-t", capacity=4096)
    sub = topic.subscribe()
    try:
        cache["config"] = {"level": "debug"}
        peer = node(
            """
            const map = shmkit.SharedMap.open(args[0]); const topic = shmkit.Topic.open(args[1])
            for (let i = 0; i < 1000; i++) map.increment('hits')
            topic.publish({ config: map.get('config'), hits: map.get('hits') })
            """,
            name + "-m",
            name + "-t",
        )
        for _ in range(1000):
            cache.increment("hits")
        assert peer.wait() == 0
        assert cache["hits"] == 2000
        message = sub.recv(timeout=10)
        assert message["config"] == {"level": "debug"}
        assert message["hits"] >= 1000
    finally:
        sub.close()
        shmkit.SharedMap.unlink(name + "-m")
        shmkit.Topic.unlink(name + "-t")


def test_node_sees_a_python_publisher_in_order(name, node):
    topic = shmkit.Topic.create(name, capacity=1 << 14, codec="json")
    peer = node(
        """
        const sub = shmkit.Topic.open(args[0]).subscribe(); console.log('subscribed')
        let expected = 0
        for await (const m of sub) { if (m.n !== expected++) throw new Error('out of order ' + m.n) }
        console.log(expected)
        """,
        name,
    )
    assert peer.line() == "subscribed"
    for n in range(5000):
        topic.publish({"n": n}, timeout=20)
    topic.end()
    assert peer.line() == "5000"
    assert peer.wait() == 0
    shmkit.Topic.unlink(name)


def test_peers_across_languages_and_receivers_that_stop_when_producers_die(name, node):
    channel = shmkit.Channel.create(name, capacity=4096, codec="json", if_peers_gone="raise")
    assert channel.peers()["peers"] == []
    # A Python producer, SIGKILLed after its message: Node lists it, then sees it dead.
    producer = python_peer(
        """
        ch = shmkit.Channel.open(args[0])
        ch.send({"from": "python"})
        print("sent", flush=True)
        import time; time.sleep(60)
        """,
        name,
    )
    assert producer.stdout.readline().strip() == "sent"
    peers = channel.peers()
    assert peers["producers"] == 1 and not peers["producers_gone"]
    assert {"pid": producer.pid, "producer": True, "consumer": False, "state": "alive"} in peers["peers"]
    producer.send_signal(signal.SIGKILL)
    producer.wait()
    assert channel.recv(timeout=5) == {"from": "python"}  # what it sent is still delivered
    with pytest.raises(shmkit.ShmkitError) as raised:
        channel.recv(timeout=10)
    assert raised.value.code == "ERR_SHM_NO_PRODUCERS"
    # A Node producer killed the same way (started first: the side is already seen gone): a Node
    # receiver with ifPeersGone 'end' gets its message, then ends.
    sender = node(
        """
        const ch = shmkit.Channel.open(args[0]); ch.send({ from: 'node' }); console.log('sent')
        globalThis.held = ch // referenced (a collected handle detaches) until the process is killed
        setInterval(() => {}, 1000)
        """,
        name,
    )
    assert sender.line() == "sent"
    peer = node(
        """
        const ch = shmkit.Channel.open(args[0], { ifPeersGone: 'end' })
        const out = []; console.log('receiving')
        for await (const m of ch) out.push(m)
        console.log(JSON.stringify(out))
        """,
        name,
    )
    assert peer.line() == "receiving"
    sender.kill()
    assert peer.line() == '[{"from":"node"}]'
    assert peer.wait() == 0
    with pytest.raises(ValueError):
        shmkit.Channel.open(name, if_peers_gone="sometimes")
    channel.close()


def test_node_and_python_takers_share_one_in_flight_table(name, node):
    channel = shmkit.Channel.create(name, capacity=4096, codec="json")
    channel.send({"from": "python"})
    peer = node(
        """
        const ch = shmkit.Channel.open(args[0])
        const job = await ch.take({ timeout: 5000 })
        console.log(JSON.stringify([job.value, job.deliveries]))
        globalThis.held = ch
        setInterval(() => {}, 1000) // holds it, unacknowledged, until killed
        """,
        name,
    )
    assert peer.line() == '[{"from":"python"},1]'
    peer.kill()
    job = channel.take(timeout=10)
    assert (job.value, job.deliveries) == ({"from": "python"}, 2)
    assert job.nack() is True
    again = node(
        """
        const ch = shmkit.Channel.open(args[0])
        const job = await ch.take({ timeout: 5000 })
        console.log(JSON.stringify([job.value, job.deliveries, job.ack()]))
        """,
        name,
    )
    assert again.line() == '[{"from":"python"},3,true]'
    assert again.wait() == 0
    channel.close()
    shmkit._native.Segment.unlink(name + ".inflight", None)
