"""Python's multiprocessing.shared_memory: create + open + close + unlink of a segment, timed."""
import json
import sys
import time
from multiprocessing import shared_memory


def main():
    size, rounds = int(sys.argv[1]), int(sys.argv[2])
    name = f"bench-py-{int(time.time() * 1e6)}"
    for _ in range(20):  # warm-up
        cycle(name, size)
    started = time.perf_counter()
    for _ in range(rounds):
        cycle(name, size)
    per_cycle = (time.perf_counter() - started) / rounds
    print(json.dumps({"microseconds": per_cycle * 1e6}))


def cycle(name, size):
    created = shared_memory.SharedMemory(name=name, create=True, size=size)
    created.buf[0] = 1  # touch a page, as a real user would
    opened = shared_memory.SharedMemory(name=name)
    opened.close()
    created.close()
    created.unlink()


if __name__ == "__main__":
    main()
