// The baseline ring: a single-producer single-consumer ring of length-prefixed messages on a
// SharedArrayBuffer, for two worker threads of ONE process (Atomics.wait/notify do not cross
// processes). Spins briefly, then sleeps with Atomics.wait, like shmkit's channel.
const HEAD = 0 // Int32 slot of the consumer index (own cache line)
const TAIL = 16 // Int32 slot of the producer index (own cache line)
const DATA = 128 // byte offset of the ring

export function createRingBuffer(capacity) {
  return new SharedArrayBuffer(DATA + capacity)
}

export class SabRing {
  constructor(buffer) {
    this.control = new Int32Array(buffer, 0, DATA / 4)
    this.capacity = buffer.byteLength - DATA
    this.mask = this.capacity - 1
    this.bytes = new Uint8Array(buffer, DATA)
    this.words = new Uint32Array(buffer, DATA)
  }

  send(message) {
    const { control, capacity, mask } = this
    const need = 4 + ((message.length + 3) & ~3)
    let tail
    for (let spins = 0; ; spins++) {
      tail = Atomics.load(control, TAIL)
      const head = Atomics.load(control, HEAD)
      if (capacity - ((tail - head) | 0) >= need) break
      if (spins > 1000) Atomics.wait(control, HEAD, head, 1)
    }
    const start = tail & mask
    this.words[start >>> 2] = message.length
    const payload = (start + 4) & mask
    const first = Math.min(message.length, capacity - payload)
    this.bytes.set(first === message.length ? message : message.subarray(0, first), payload)
    if (first < message.length) this.bytes.set(message.subarray(first), 0)
    Atomics.store(control, TAIL, (tail + need) | 0)
    Atomics.notify(control, TAIL, 1)
  }

  recv() {
    const { control, capacity, mask } = this
    let head
    for (let spins = 0; ; spins++) {
      head = Atomics.load(control, HEAD)
      const tail = Atomics.load(control, TAIL)
      if (tail !== head) break
      if (spins > 1000) Atomics.wait(control, TAIL, tail, 1)
    }
    const start = head & mask
    const length = this.words[start >>> 2]
    const payload = (start + 4) & mask
    let message
    if (payload + length <= capacity) message = this.bytes.slice(payload, payload + length)
    else {
      message = new Uint8Array(length)
      message.set(this.bytes.subarray(payload, capacity))
      message.set(this.bytes.subarray(0, length - (capacity - payload)), capacity - payload)
    }
    Atomics.store(control, HEAD, (head + 4 + ((length + 3) & ~3)) | 0)
    Atomics.notify(control, HEAD, 1)
    return message
  }
}
