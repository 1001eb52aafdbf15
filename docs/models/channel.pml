/*
 * channel.pml: the shmkit channel protocol (docs/CHANNELS.md), for the Spin model checker.
 *
 * A ring of CAP slots; head/tail count messages (free-running, never wrap in the model).
 * Producers 1..NPROD each send MSGS messages (ids (p-1)*MSGS+1 ..); consumers
 * NPROD+1..NPROD+NCONS receive until CLOSED; one Closer calls end() once.
 *
 * Abstractions (see docs/models/README.md):
 *  - side locks: test-and-set on an owner word, taken over when its holder is dead (the lock
 *    protocol itself is lock.pml's subject); a taker resumes with the ring as the dead holder
 *    left it.
 *  - a message is two words (part a, part b) written in two steps: a torn slot is detectable.
 *  - futex: fx[t] AWAKE / ASLEEP / WOKEN on address fxa[t] (1 = recv_event, 2 = send_event);
 *    the compare-and-sleep is one atomic step; futex_wake(ALL) wakes every sleeper of that
 *    address. TIMEOUTS 0: sleeps end only by a wake; 1: a sleep may end at any moment
 *    (slice timeout or spurious return); 2: only when that can change what the sleeper does
 *    next (its event word changed, or its condition holds).
 *  - death: the Killer sets dead[t] for a producer or consumer at any moment (at most
 *    MAXDEATHS); every body is wrapped in `unless { dead[me] -> ... }`: a dead process does
 *    nothing more (the escape only clears its local variables, to merge equivalent states).
 *
 * Switches: NPROD, NCONS, MSGS, CAP, TIMEOUTS, MAXDEATHS, KILLMASK, IDLE (as in lock.pml),
 * ASSERTS, and the mutants END_NO_LOCK (end() sets closed without the send lock), TAIL_FIRST
 * (an empty consumer reads tail before closed), NO_RECHECK (a sleeper skips the re-check
 * between raising its sleepers flag and sleeping).
 */

#ifndef NPROD
#define NPROD 1
#endif
#ifndef NCONS
#define NCONS 1
#endif
#ifndef MSGS
#define MSGS 2
#endif
#ifndef CAP
#define CAP 1
#endif
#ifndef TIMEOUTS
#define TIMEOUTS 0
#endif
#ifndef MAXDEATHS
#define MAXDEATHS 0
#endif
/* which processes the Killer may kill: bit t-1 for process t (producers and consumers only) */
#ifndef KILLMASK
#define KILLMASK 255
#endif
/* IDLE=1 for liveness runs: the Killer may decide to kill nobody more (see lock.pml) */
#ifndef IDLE
#define IDLE 0
#endif
/* which assertion groups are checked: 1 = ring integrity (whole, FIFO, exactly once),
 * 2 = no send succeeds after end(), 4 = close drains (nothing left or published after CLOSED) */
#ifndef ASSERTS
#define ASSERTS 7
#endif
#define CHECK(g, e) assert(!(ASSERTS & (g)) || (e))
#ifndef END_NO_LOCK
#define END_NO_LOCK 0
#endif
#ifndef NO_RECHECK
#define NO_RECHECK 0
#endif
#ifndef TAIL_FIRST
#define TAIL_FIRST 0
#endif

#define NT (NPROD + NCONS + 1)      /* processes: producers, consumers, closer */
#define CLOSER NT
#define MAXM (NPROD * MSGS)
#define IS_PROD(t) ((t) <= NPROD)
#define IS_CONS(t) ((t) > NPROD && (t) <= NPROD + NCONS)

#define AWAKE  0
#define ASLEEP 1
#define WOKEN  2
#define A_RECV 1
#define A_SEND 2

/* shared words */
byte head, tail;
bool closed;
byte recv_sleepers, recv_event, send_sleepers, send_event;
byte slock, rlock;                 /* side locks: holder id, 0 = free */
byte slot_a[CAP], slot_b[CAP];     /* the ring: message id, in two parts */

/* model bookkeeping */
bool dead[NT+1];
bool done[NT+1];
byte fx[NT+1];
byte fxa[NT+1];
byte ndeaths;

/* ghosts */
byte pub[MAXM];                    /* message id published at ring position i */
bool delivered[MAXM+1];            /* returned by a live consumer */
bool dead_taken[MAXM+1];           /* consumed (head moved past it) by a consumer that died before returning it */
byte holding[NT+1];                /* consumer t moved head past this message and has not returned it yet */
bool got_closed;                   /* some consumer returned CLOSED */
byte last_dlv[NPROD+1];            /* per producer: last sequence number delivered (NCONS == 1) */

#define FIN(t) (done[t] || dead[t])
#define HAS_DATA (tail != head)
#define HAS_ROOM (tail - head < CAP)
#define CONS_WAKEABLE (HAS_DATA || closed)
#define PROD_WAKEABLE (HAS_ROOM || closed)
#define EVENT(a) ((a) == A_RECV -> recv_event : send_event)

#if NPROD == 1
#define PRODS_FIN FIN(1)
#elif NPROD == 2
#define PRODS_FIN (FIN(1) && FIN(2))
#elif NPROD == 3
#define PRODS_FIN (FIN(1) && FIN(2) && FIN(3))
#else
#error "NPROD must be 1..3"
#endif
#if NCONS == 1
#define CONS_FIN FIN(NPROD+1)
#define C_STUCK(t) (fx[t] == ASLEEP && CONS_WAKEABLE)
#define ANY_C_STUCK C_STUCK(NPROD+1)
#elif NCONS == 2
#define CONS_FIN (FIN(NPROD+1) && FIN(NPROD+2))
#define C_STUCK(t) (fx[t] == ASLEEP && CONS_WAKEABLE)
#define ANY_C_STUCK (C_STUCK(NPROD+1) || C_STUCK(NPROD+2))
#else
#error "NCONS must be 1 or 2"
#endif
#define P_STUCK(t) (fx[t] == ASLEEP && PROD_WAKEABLE)
#if NPROD == 1
#define ANY_P_STUCK P_STUCK(1)
#elif NPROD == 2
#define ANY_P_STUCK (P_STUCK(1) || P_STUCK(2))
#else
#define ANY_P_STUCK (P_STUCK(1) || P_STUCK(2) || P_STUCK(3))
#endif
#define ALLDONE (PRODS_FIN && CONS_FIN && done[CLOSER])

/* ---- side locks ----------------------------------------------------------------------- */

inline take_lock(lk) {
  atomic { (lk == 0 || dead[lk]) -> lk = me }
}

/* Steps merged around the side locks (a reduction in the sense of Lipton: an acquisition moves
 * right, a release moves left, a read of a word that only the lock holder writes moves both
 * ways, so "acquire; such reads; at most one other shared access; release" can be one step):
 *  - the acquisition with the reads that follow it (producer: closed, tail, head; consumer:
 *    head, tail), and with the release when the side is closed, full or empty;
 *  - the publish (store tail) and the consume (store head) with the release that follows.
 * A process that dies inside such a step has changed nothing but the lock word, which the next
 * taker takes over: the same as dying just before or after it. */

inline release_lock(lk) {
  lk = 0
}

/* ---- futex on the event words --------------------------------------------------------- */

/* futex_wait(&event(addr), expected, slice); `cond` says whether the sleeper's condition holds */
inline futex_wait(addr, expected, cond) {
  atomic {
    if
    :: EVENT(addr) == (expected) -> fx[me] = ASLEEP; fxa[me] = addr; r = 0
    :: else -> r = 1                                  /* NOT_EQUAL */
    fi
  }
  if
  :: r == 0 ->
     atomic {
       if
       :: fx[me] == WOKEN
       :: fx[me] == ASLEEP && (TIMEOUTS == 1 ||
            (TIMEOUTS == 2 && (EVENT(addr) != (expected) || (cond))))
       fi;
       fx[me] = AWAKE; fxa[me] = 0; r = 0
     }
  :: else -> r = 0
  fi
}

/* futex_wake(&event(addr), ALL) */
inline futex_wake_all(addr) {
  d_step {
    w = 1;
    do
    :: w <= NT ->
       if
       :: fx[w] == ASLEEP && fxa[w] == addr -> fx[w] = WOKEN
       :: else -> skip
       fi;
       w++
    :: else -> break
    od;
    w = 0
  }
}

/* after publish / consume: if sleepers != 0 && swap(sleepers, 0) != 0 { event += 1; wake ALL }.
 * The load and the swap are one step here: a load that sees 1 followed by a swap that returns
 * 0 (another waker swapped in between) skips, exactly as a combined step that sees 0. */
inline wake_side(sleepers, event, addr) {
  atomic {                          /* the load and the swap in one step (see above) */
    if
    :: sleepers != 0 -> x = sleepers; sleepers = 0
    :: else -> x = 0
    fi
  }
  if
  :: x != 0 ->
     atomic { event++; x = 0 }
     futex_wake_all(addr)
  :: else -> skip
  fi
}

/* ---- processes ------------------------------------------------------------------------ */

proctype Producer(byte me) {
  byte k = 1, t, h, e, r, w, x;
  bool c, sent;
  {
    do
    :: k <= MSGS ->
       sent = 0;
       do                                              /* send((me-1)*MSGS + k) */
       :: atomic {                                     /* take the send lock, check */
            (slock == 0 || dead[slock]) -> slock = me;
            c = closed;
            t = tail;
            h = head;
            if
            :: c || t - h == CAP -> release_lock(slock)
            :: else -> skip
            fi
          }
          if
          :: c ->
             atomic { c = 0; t = 0; h = 0 }
             break                                     /* fails: CLOSED */
          :: else ->
             if
             :: t - h == CAP ->                        /* full: lock released above */
                /* wait for room */
                e = send_event;
                send_sleepers = 1;
                t = tail;
                h = head;
                c = closed;
                if
                :: !NO_RECHECK && (t - h < CAP || c) -> skip
                :: else -> futex_wait(A_SEND, e, PROD_WAKEABLE)
                fi;
                atomic { t = 0; h = 0; e = 0; c = 0 }
             :: else ->
                slot_a[t % CAP] = (me - 1) * MSGS + k;  /* write part a */
                slot_b[t % CAP] = (me - 1) * MSGS + k;  /* write part b */
                atomic {                               /* publish, release the lock */
                  CHECK(2, !closed);                   /* no send succeeds after end() */
                  CHECK(4, !got_closed);               /* nothing is published after a consumer saw the end */
                  pub[t] = (me - 1) * MSGS + k;
                  tail = t + 1;
                  release_lock(slock)
                }
                wake_side(recv_sleepers, recv_event, A_RECV);
                atomic { sent = 1; t = 0; h = 0 }
                break
             fi
          fi
       od;
       if
       :: sent -> k++
       :: else -> break                                /* CLOSED: stop sending */
       fi
    :: else -> break
    od;
    done[me] = 1
  } unless { atomic { dead[me] -> k = 0; t = 0; h = 0; e = 0; r = 0; w = 0; x = 0; c = 0; sent = 0 } }
}

proctype Consumer(byte me) {
  byte t, h, e, r, w, x, a, b;
  bool c;
  {
    do
    :: atomic {                                        /* take the receive lock, check */
         (rlock == 0 || dead[rlock]) -> rlock = me;
         h = head;
         t = tail;
         if
         :: t == h -> release_lock(rlock)
         :: else -> skip
         fi
       }
       if
       :: t == h ->                                    /* empty: lock released above */
#if TAIL_FIRST
          t = tail;
          c = closed;
#else
          c = closed;
          t = tail;
#endif
          if
          :: c && t == h ->                            /* CLOSED: end of stream */
             atomic { got_closed = 1; CHECK(4, head == tail) }
             break
          :: else ->
             /* wait for data */
             e = recv_event;
             recv_sleepers = 1;
             t = tail;
             h = head;
             c = closed;
             if
             :: !NO_RECHECK && (t != h || c) -> skip
             :: else -> futex_wait(A_RECV, e, CONS_WAKEABLE)
             fi
          fi;
          atomic { t = 0; h = 0; e = 0; c = 0 }
       :: else ->
          a = slot_a[h % CAP];                         /* read part a */
          b = slot_b[h % CAP];                         /* read part b */
          atomic {                                     /* consume, release the lock */
            CHECK(1, a == b);                          /* whole: no torn message */
            CHECK(1, a == pub[h]);                     /* the message published at h: FIFO, not overwritten */
            head = h + 1;
            holding[me] = a;
            release_lock(rlock)
          }
          wake_side(send_sleepers, send_event, A_SEND);
          atomic {                                     /* recv returns message a */
            CHECK(1, !delivered[a] && !dead_taken[a]); /* exactly once */
            delivered[a] = 1;
            holding[me] = 0;
#if NCONS == 1
            CHECK(1, (a - 1) % MSGS + 1 > last_dlv[(a - 1) / MSGS + 1]);   /* per-producer order */
            last_dlv[(a - 1) / MSGS + 1] = (a - 1) % MSGS + 1;
#endif
            a = 0; b = 0; t = 0; h = 0
          }
       fi
    od;
    done[me] = 1
  } unless { atomic { dead[me] -> t = 0; h = 0; e = 0; r = 0; w = 0; x = 0; a = 0; b = 0; c = 0 } }
}

proctype Closer() {
  byte me = CLOSER;
  byte w;
#if END_NO_LOCK
  closed = 1;                                          /* mutant: no send lock */
#else
  atomic { take_lock(slock); closed = 1; release_lock(slock) }
#endif
  recv_event++;
  futex_wake_all(A_RECV);
  send_event++;
  futex_wake_all(A_SEND);
  done[me] = 1
}

#define KILLABLE(t) (ndeaths < MAXDEATHS && (t) < CLOSER && (KILLMASK & (1 << ((t) - 1))) && !FIN(t))

proctype Killer() {
  byte t;
end:
  do
  :: atomic {
       if
       :: KILLABLE(1) -> t = 1
       :: KILLABLE(2) -> t = 2
       :: KILLABLE(3) -> t = 3
       :: KILLABLE(4) -> t = 4
       :: KILLABLE(5) -> t = 5
       fi;
       /* a consumer that dies between moving head and returning: taken, not delivered */
       if
       :: holding[t] != 0 -> dead_taken[holding[t]] = 1; holding[t] = 0
       :: else -> skip
       fi;
       dead[t] = 1; fx[t] = AWAKE; fxa[t] = 0; ndeaths++; t = 0
     }
#if IDLE
  :: break
#endif
  od
}

/* At the end: every published message was delivered once or taken by a consumer that died,
 * or is still in the ring; if a consumer finished alive (it returned CLOSED), the ring is
 * empty: close drains. */
proctype Accounting() {
  byte i;
end:
  atomic {
    ALLDONE ->
    i = 0;
    do
    :: i < tail ->
       CHECK(1, i >= head || delivered[pub[i]] || dead_taken[pub[i]]);   /* never lost */
       i++
    :: else -> break
    od;
    i = NPROD + 1;
    do
    :: i <= NPROD + NCONS ->
       CHECK(4, dead[i] || head == tail);               /* close drains */
       i++
    :: else -> break
    od
  }
}

init {
  byte i;
  atomic {
    i = 1;
    do
    :: i <= NPROD -> run Producer(i); i++
    :: else -> break
    od;
    do
    :: i <= NPROD + NCONS -> run Consumer(i); i++
    :: else -> break
    od;
    run Closer();
    if
    :: MAXDEATHS > 0 -> run Killer()
    :: else -> skip
    fi;
    run Accounting()
  }
}

/* Progress: every producer sends all its messages or gets CLOSED, every consumer gets CLOSED
 * (or dies), end() completes. */
ltl progress { <> ALLDONE }
/* No lost wake-up: nobody stays asleep forever while its condition holds. */
ltl no_lost_wakeup { [] <> !(ANY_C_STUCK || ANY_P_STUCK) }
