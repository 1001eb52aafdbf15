"""Python's multiprocessing.Lock, uncontended and with N contending processes; prints JSON."""
import json
import sys
import time
from multiprocessing import Lock, Process, Value


def contend(lock, counter, stop, counts, index):
    mine = 0
    while not stop.value:
        for _ in range(64):
            with lock:
                counter.value += 1
        mine += 64
    counts[index] = mine


def main():
    seconds = float(sys.argv[1])
    contenders = int(sys.argv[2])
    lock = Lock()
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            lock.acquire()
            lock.release()
        done += 1000
    uncontended = done / (time.perf_counter() - started)

    from multiprocessing import Array
    counter = Value("d", 0, lock=False)
    stop = Value("i", 0, lock=False)
    counts = Array("q", contenders, lock=False)
    workers = [Process(target=contend, args=(lock, counter, stop, counts, i)) for i in range(contenders)]
    for worker in workers:
        worker.start()
    time.sleep(0.2)  # let them all start
    base = counter.value
    started = time.perf_counter()
    time.sleep(seconds)
    stop.value = 1
    elapsed = time.perf_counter() - started
    for worker in workers:
        worker.join()
    total = sum(counts)
    print(json.dumps({
        "uncontended": uncontended,
        "contended": (counter.value - base) / elapsed,
        "shares": [c / total for c in counts] if total else [],
        "exact": counter.value == total,
    }))


if __name__ == "__main__":
    main()
