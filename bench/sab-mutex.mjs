// The baseline: a futex-style mutex on a SharedArrayBuffer (Drepper's three-state mutex, as in
// "Futexes Are Tricky"), for threads of ONE process: Atomics.wait/notify do not cross processes.
export class SabMutex {
  /** @param {Int32Array} words over a SharedArrayBuffer; @param {number} index of the lock word */
  constructor(words, index) {
    this.words = words
    this.index = index
  }

  lock() {
    const { words, index } = this
    let state = Atomics.compareExchange(words, index, 0, 1)
    if (state === 0) return
    if (state !== 2) state = Atomics.exchange(words, index, 2)
    while (state !== 0) {
      Atomics.wait(words, index, 2)
      state = Atomics.exchange(words, index, 2)
    }
  }

  unlock() {
    const { words, index } = this
    if (Atomics.sub(words, index, 1) !== 1) {
      Atomics.store(words, index, 0)
      Atomics.notify(words, index, 1)
    }
  }
}
