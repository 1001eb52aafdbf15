// Module-private tokens shared by the classes of this package (never exported from index.ts).

/** Passed to constructors that users must not call directly. */
export const CONSTRUCT = Symbol('shmkit.construct')
/** Segment kinds recorded in the header (docs/LAYOUT.md). */
export const KIND_SEGMENT = 1
export const KIND_CHANNEL = 2
