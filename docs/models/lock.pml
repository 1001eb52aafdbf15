/*
 * lock.pml: the shmkit lock protocol (docs/LOCKING.md), for the Spin model checker.
 *
 * One lock word `state` = owner thread id (bits 0..3, 0 = free) | W (bit 4, WAITERS).
 * Threads 1..N each perform ITER operations; each operation is chosen nondeterministically
 * among those enabled in OPS (1 = sync lock, 2 = tryLock, 4 = lockAsync). A thread that gets
 * the lock runs a one-step critical section and unlocks.
 *
 * Abstractions (see docs/models/README.md):
 *  - futex: fx[t] is AWAKE / ASLEEP / WOKEN. futex_wait compares and goes to sleep in one
 *    atomic step; futex_wake(1) marks one ASLEEP thread (any) WOKEN; a sleeper returns WOKEN
 *    when marked, else TIMED_OUT: TIMEOUTS 0 never, 1 at any moment (slice timeouts, spurious
 *    returns), 2 only when that can change what it does next (the word no longer holds the
 *    value slept on, or that value's owner is dead). A cancelled async waiter always ends its
 *    sleep at the slice.
 *  - death: the Killer process sets dead[t] (and takes t out of the futex queue) at any moment,
 *    at most MAXDEATHS times; every thread body is wrapped in `unless { dead[me] -> ... }`, so
 *    a dead thread does nothing more (the escape only clears its locals, so equal states
 *    merge). The liveness oracle is dead[] itself: perfect.
 *  - cancellation: a Canceller for each thread in the mask CANCEL may set cancelled[t] once, at
 *    any moment; it stays set (an aborted AbortSignal stays aborted).
 *
 * Switches (spin -DNAME=value -a lock.pml):
 *  N (2..4), ITER, OPS (per thread: OPS1..4, ITER1..4), TIMEOUTS, MAXDEATHS, CANCEL as above;
 *  SPINS: rounds of the sync lock's spin phase;
 *  IDLE: 1 in liveness runs (see its definition below);
 *  PASS_ON: what a cancelled lockAsync does with a wake it consumed
 *    0 = nothing (mutant: must break no-lost-wake-up),
 *    1 = as first specified: futex_wake(1) iff the LAST waiter outcome was WOKEN,
 *    2 = futex_wake(1) iff ANY waiter round of this request returned WOKEN (the fix),
 *    3 = futex_wake(1) on every cancelled give-up (also correct, one syscall more).
 */

#ifndef N
#define N 3
#endif
#ifndef ITER
#define ITER 1
#endif
#ifndef OPS
#define OPS 7
#endif
#ifndef SPINS
#define SPINS 1
#endif
#ifndef TIMEOUTS
#define TIMEOUTS 0
#endif
#ifndef MAXDEATHS
#define MAXDEATHS 0
#endif
/* per-thread operation masks and iteration counts (default: OPS, ITER) */
#ifndef OPS1
#define OPS1 OPS
#endif
#ifndef OPS2
#define OPS2 OPS
#endif
#ifndef OPS3
#define OPS3 OPS
#endif
#ifndef OPS4
#define OPS4 OPS
#endif
#ifndef ITER1
#define ITER1 ITER
#endif
#ifndef ITER2
#define ITER2 ITER
#endif
#ifndef ITER3
#define ITER3 ITER
#endif
#ifndef ITER4
#define ITER4 ITER
#endif
#ifndef CANCEL
#define CANCEL 0
#endif
/* IDLE=1 for liveness (LTL) runs: the Killer and the Cancellers may then decide to do nothing
 * more. Without that choice, at the end of a run where every thread is stuck, a Killer or
 * Canceller that can still act would be the only process able to move and would be forced to
 * act (and a death or a cancel can end the stuck run); under weak fairness it would be forced to
 * act in every run. Safety runs do not need it (never being scheduled covers "never acts"). */
#ifndef IDLE
#define IDLE 0
#endif
#ifndef PASS_ON
#define PASS_ON 2
#endif

#define W 16
#define OWNER(v) ((v) & 15)

/* futex sleeper states */
#define AWAKE  0
#define ASLEEP 1
#define WOKEN  2

/* futex_wait results and async waiter outcomes */
#define R_WOKEN     1
#define R_NOT_EQUAL 2
#define R_TIMED_OUT 3
#define O_FREE      4
#define O_DEAD      5
#define O_CANCELLED 6

byte state;            /* the lock word */
byte rec_tid;          /* owner record, written by the holder after its CAS */
bool dead[N+1];        /* liveness oracle */
bool incs[N+1];        /* ghost: t holds the lock (from its acquiring CAS to its releasing CAS/swap) */
byte takers[N+1];      /* ghost: takeovers of the lock held by dead thread t */
bool done[N+1];        /* ghost: t finished all its operations */
byte fx[N+1];          /* futex queue on `state` */
bool cancelled[N+1];   /* abort signal of t's async requests */
byte ndeaths;

#define LIVECS(t) ((incs[t] && !dead[t]) -> 1 : 0)
#define FIN(t) (done[t] || dead[t])
#define SLEEPING(t) (fx[t] == ASLEEP)
#if N == 2
#define NLIVECS (LIVECS(1) + LIVECS(2))
#define ALLDONE (FIN(1) && FIN(2))
#define ANYASLEEP (SLEEPING(1) || SLEEPING(2))
#elif N == 3
#define NLIVECS (LIVECS(1) + LIVECS(2) + LIVECS(3))
#define ALLDONE (FIN(1) && FIN(2) && FIN(3))
#define ANYASLEEP (SLEEPING(1) || SLEEPING(2) || SLEEPING(3))
#elif N == 4
#define NLIVECS (LIVECS(1) + LIVECS(2) + LIVECS(3) + LIVECS(4))
#define ALLDONE (FIN(1) && FIN(2) && FIN(3) && FIN(4))
#define ANYASLEEP (SLEEPING(1) || SLEEPING(2) || SLEEPING(3) || SLEEPING(4))
#else
#error "N must be 2, 3 or 4"
#endif
#define FREE (OWNER(state) == 0)

/* ---- futex ---------------------------------------------------------------------------- */

/* futex_wait(&state, expected): r = R_WOKEN / R_NOT_EQUAL / R_TIMED_OUT */
inline futex_wait(expected, r) {
  atomic {
    if
    :: state == (expected) -> fx[me] = ASLEEP; r = 0
    :: else -> r = R_NOT_EQUAL
    fi
  }
  if
  :: r == 0 ->
     atomic {
       if
       :: fx[me] == WOKEN -> r = R_WOKEN
       :: fx[me] == ASLEEP && (cancelled[me] || TIMEOUTS == 1 ||
            (TIMEOUTS == 2 && (state != (expected) || dead[OWNER(expected)]))) -> r = R_TIMED_OUT
       fi;
       fx[me] = AWAKE
     }
  :: else -> skip
  fi
}

/* futex_wake(&state, 1): wakes one sleeper, any of them */
inline futex_wake1() {
  atomic {
    if
    :: fx[1] == ASLEEP -> fx[1] = WOKEN
    :: fx[2] == ASLEEP -> fx[2] = WOKEN
#if N >= 3
    :: fx[3] == ASLEEP -> fx[3] = WOKEN
#endif
#if N >= 4
    :: fx[4] == ASLEEP -> fx[4] = WOKEN
#endif
    :: else -> skip
    fi
  }
}

/* ---- acquisition primitives ----------------------------------------------------------- */

/* CAS(state, from -> to) that acquires the lock; checks mutual exclusion on success */
inline cas_acquire(from, to, ok) {
  atomic {
    if
    :: state == (from) ->
       state = (to); ok = 1; incs[me] = 1;
       assert(NLIVECS <= 1)                       /* mutual exclusion */
    :: else -> ok = 0
    fi
  }
}

/* takeover CAS(state, from -> me | W) after the oracle judged OWNER(from) dead */
inline takeover(from, ok) {
  atomic {
    if
    :: state == (from) ->
       assert(dead[OWNER(from)]);                 /* a live holder is never robbed */
       takers[OWNER(from)]++;
       assert(takers[OWNER(from)] <= 1);          /* one taker per death */
       state = me | W; ok = 1; incs[me] = 1;
       assert(NLIVECS <= 1)                       /* mutual exclusion */
    :: else -> ok = 0
    fi
  }
}

/* set W on an observed held value v: CAS(v -> v | W) */
inline set_waiters(v, fl) {
  if
  :: (v & W) == 0 ->
     atomic {
       if
       :: state == v -> state = v | W; fl = 1
       :: else -> fl = 0
       fi
     }
  :: else -> fl = 1
  fi
}

/* ---- operations ----------------------------------------------------------------------- */

inline sync_lock() {
  cas_acquire(0, me, ok);                         /* fast path */
  k = 0;
  do                                              /* spin phase */
  :: !ok && k < SPINS ->
     v = state;
     if
     :: OWNER(v) == 0 -> cas_acquire(v, me | (v & W), ok)
     :: else -> skip
     fi;
     k++
  :: else -> break
  od;
  do                                              /* sleep loop */
  :: ok -> break
  :: else ->
     atomic { v = state; v2 = 0; r = 0; fl = 0; k = 0 }
     if
     :: OWNER(v) == 0 -> cas_acquire(v, me | W, ok)
     :: else ->
        set_waiters(v, fl);
        if
        :: fl ->
           futex_wait(v | W, r);
           if
           :: r == R_TIMED_OUT ->
              v2 = state;
              if
              :: v2 == (v | W) && dead[OWNER(v)] -> takeover(v | W, ok)
              :: else -> skip
              fi
           :: else -> skip
           fi
        :: else -> skip
        fi
     fi
  od
}

inline try_lock() {
  cas_acquire(0, me, ok);
  if
  :: !ok ->
     v = state;
     if
     :: OWNER(v) == 0 -> cas_acquire(v, me | (v & W), ok)
     :: OWNER(v) != 0 && dead[OWNER(v)] -> takeover(v, ok)
     :: else -> skip                              /* busy */
     fi
  :: else -> skip
  fi
}

/* lockAsync: tryLock, then waiter rounds (the waiter only waits) and JS continuations that
 * acquire. The continuation runs after an arbitrary delay: any interleaving is explored. */
inline lock_async() {
  try_lock();
  owes = 0;
  do
  :: ok -> break
  :: else ->
     /* the waiter thread */
     do
     :: cancelled[me] -> outcome = O_CANCELLED; break
     :: else ->
        atomic { v = state; v2 = 0; r = 0; fl = 0 }
        if
        :: OWNER(v) == 0 -> outcome = O_FREE; break
        :: else ->
           set_waiters(v, fl);
           if
           :: fl ->
              futex_wait(v | W, r);
              if
              :: r == R_WOKEN -> outcome = R_WOKEN; break
              :: r == R_TIMED_OUT ->
                 v2 = state;
                 if
                 :: v2 == (v | W) && dead[OWNER(v)] -> outcome = O_DEAD; break
                 :: else -> skip
                 fi
              :: else -> skip
              fi
           :: else -> skip
           fi
        fi
     od;
     /* the JS continuation */
     if
     :: outcome == R_WOKEN -> owes = 1
     :: else -> skip
     fi;
     if
     :: cancelled[me] ->
        if
        :: (PASS_ON == 1 && outcome == R_WOKEN) || (PASS_ON == 2 && owes) || PASS_ON == 3 ->
           futex_wake1()
        :: else -> skip
        fi;
        break                                     /* gave up */
     :: else ->
        atomic { v = state; v2 = 0; r = 0; fl = 0; outcome = 0 }
        if
        :: OWNER(v) == 0 -> cas_acquire(v, me | W, ok)
        :: OWNER(v) != 0 && dead[OWNER(v)] -> takeover(v, ok)
        :: else -> skip                           /* a live holder: re-arm */
        fi
     fi
  od
}

inline unlock() {
  rec_tid = 0;
  atomic {
    if
    :: state == me -> state = 0; incs[me] = 0; ok = 1
    :: else -> ok = 0
    fi
  }
  if
  :: !ok ->
     atomic { v = state; assert(OWNER(v) == me); state = 0; incs[me] = 0 }   /* swap */
     if
     :: (v & W) != 0 -> futex_wake1()
     :: else -> skip
     fi
  :: else -> skip
  fi
}

proctype Thread(byte me; byte ops; byte iters) {
  byte v, v2, r, k, it, outcome;
  bool ok, fl, owes;
  {
    do
    :: it < iters ->
       ok = 0;
       if
       :: (ops & 1) -> sync_lock()
       :: (ops & 2) -> try_lock()
       :: (ops & 4) -> lock_async()
       fi;
       if
       :: ok ->
          rec_tid = me;                           /* owner record */
          assert(rec_tid == me && OWNER(state) == me);   /* critical section */
          unlock()
       :: else -> skip
       fi;
       atomic { it++; v = 0; v2 = 0; r = 0; k = 0; outcome = 0; ok = 0; fl = 0; owes = 0 }
    :: else -> break
    od;
    done[me] = 1
  } unless { atomic { dead[me] -> v = 0; v2 = 0; r = 0; k = 0; it = 0; outcome = 0; ok = 0; fl = 0; owes = 0 } }
}

proctype Killer() {
  byte t;
end:
  do
  :: atomic {
       if
       :: ndeaths < MAXDEATHS && !FIN(1) -> t = 1
       :: ndeaths < MAXDEATHS && !FIN(2) -> t = 2
#if N >= 3
       :: ndeaths < MAXDEATHS && !FIN(3) -> t = 3
#endif
#if N >= 4
       :: ndeaths < MAXDEATHS && !FIN(4) -> t = 4
#endif
       fi;
       dead[t] = 1; fx[t] = AWAKE; ndeaths++
     }
#if IDLE
  :: break
#endif
  od
}

proctype Canceller(byte t) {
  /* cancels t's async requests at any moment, or never */
  if
  :: cancelled[t] = 1
#if IDLE
  :: skip
#endif
  fi
}

init {
  atomic {
    run Thread(1, OPS1, ITER1);
    run Thread(2, OPS2, ITER2);
#if N >= 3
    run Thread(3, OPS3, ITER3);
#endif
#if N >= 4
    run Thread(4, OPS4, ITER4);
#endif
    if
    :: MAXDEATHS > 0 -> run Killer()
    :: else -> skip
    fi;
    if :: (CANCEL & 1) && (OPS1 & 4) -> run Canceller(1) :: else -> skip fi;
    if :: (CANCEL & 2) && (OPS2 & 4) -> run Canceller(2) :: else -> skip fi;
#if N >= 3
    if :: (CANCEL & 4) && (OPS3 & 4) -> run Canceller(3) :: else -> skip fi;
#endif
#if N >= 4
    if :: (CANCEL & 8) && (OPS4 & 4) -> run Canceller(4) :: else -> skip fi;
#endif
  }
}

/* Progress: every thread eventually finishes all its operations (or is dead). */
ltl progress { <> ALLDONE }
/* No lost wake-up: never, from some point on, is the lock free forever while a thread sleeps. */
ltl no_lost_wakeup { [] <> !(FREE && ANYASLEEP) }
