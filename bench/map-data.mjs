// The map benchmark's data set, shared by the benchmark and its reader processes.
export const KEYS = 10_000

export const keyOf = (i) => `user:${i}`
export const valueOf = (i, version = 0) => ({
  id: i,
  name: `User ${i}`,
  email: `user${i}@example.com`,
  visits: version,
  tags: ['a', 'b'],
})
/** A fixed pseudo-random visiting order, so every contender reads the same keys in the same order. */
export function order(length = 1 << 16) {
  const out = new Uint32Array(length)
  let x = 2463534242
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = (x >>> 0) % KEYS
  }
  return out
}
