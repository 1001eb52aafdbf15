// Module-private tokens shared by the classes of this package (never exported from index.ts).

/** Passed to constructors that users must not call directly. */
export const CONSTRUCT = Symbol('shmkit.construct')
/** The key under which a public object keeps its private `Handle` (the better-sqlite3 way). */
export const HANDLE = Symbol('shmkit.handle')
