// Shared layout of the soak test's counter segment.
export const COUNTERS = 4
/** Lockers ever started (killed ones are replaced by new ones, each with its own column). */
export const MAX_LOCKERS = 4096
/** Per counter: mutex at 0, value (f64) at 64, one contribution (f64) per locker from 128. */
export const SLOT_BYTES = 128 + 8 * MAX_LOCKERS
export const STOP = COUNTERS * SLOT_BYTES // Int32: 1 = stop
export const SEGMENT_BYTES = STOP + 64

export const mutexOffset = (slot) => slot * SLOT_BYTES
export const valueOffset = (slot) => slot * SLOT_BYTES + 64
export const contributionOffset = (slot, locker) => slot * SLOT_BYTES + 128 + 8 * locker
