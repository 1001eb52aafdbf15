/*
 * topic.pml: the shmkit topic (broadcast) protocol (docs/TOPIC.md, crates/shmkit-core/src/topic.rs),
 * for the Spin model checker.
 *
 * A ring of CAP cells (one cell = 8 bytes = two words, a and b). A record is a header cell
 * (a = payload length in cells, b = record number) and 1..3 payload cells: the first payload
 * cell's word a holds the message id, the last payload cell's word b its checksum (the id
 * again); the words between are padding that keeps whatever was there. tail, head, writing and
 * the cursors are free-running cell counters that never wrap in the model (no 32-bit wrap).
 * Publishers 1..NPUB each publish MSGS messages (ids (p-1)*MSGS+1 ..), of a size chosen among
 * SIZES; subscribers NPUB+1..NPUB+NSUB subscribe (subscriber s owns table slot s), then receive
 * until the end; one Closer calls end() once.
 *
 * Abstractions (see docs/models/README.md):
 *  - the publish lock: a test-and-set on an owner word, taken over when its holder is dead (the
 *    lock protocol itself is lock.pml's subject); the taker learns owner_died.
 *  - futex, deaths (Killer, MAXDEATHS, KILLMASK), timeouts (TIMEOUTS 0/1/2) and IDLE as in
 *    channel.pml. TIMEOUTS=2: a sleep may end when its event word changed, when its condition
 *    holds, or (publisher) when a dead subscriber holds the room (the 250 ms slice after which
 *    it reaps it).
 *  - the liveness oracle (reap_if_dead, claim_slot) is dead[] itself: perfect.
 *  - merged steps (Lipton, as in channel.pml): the lock acquisition with the reads and writes of
 *    words only lock holders access (published) and the reads of words only lock holders write
 *    (tail, head, writing, ended, the ring) that follow it, and the release with the store of
 *    `published` before it; the head walk (ring reads) with the store of head; the load of
 *    `writing` with its store; subscribe (claim_slot) and end() are one step each (their only
 *    stores visible to others, the slot's state and `ended`, sit between the acquisition and the
 *    release); a table slot's state and cursor, read by a publisher's scan, are one step (no
 *    other process writes both between the two loads, so reading them together removes no
 *    outcome). Every other shared load and store is its own step: the reap's state load and
 *    its CAS, the stores of head and writing, each ring word written or read, tail, published;
 *    the subscriber's ended, tail, header words, payload words, writing, head, cursor; the
 *    sleeper's and the waker's steps (the waker's load of the flag and its swap are one step,
 *    as in channel.pml).
 *  - processes the Killer may not kill run without the `unless` escape (see BODY_P below).
 *  - look()'s first check, that the slot is still the subscription's (else ERR_SHM_CLOSED), is
 *    left out: here a slot is freed only by its own close or after its thread died, so it holds.
 *
 * Switches: NPUB (1..2), NSUB (1..2), MSGS (MSGS1, MSGS2 per publisher, at most MSGS), CAP,
 * SIZES (SIZES1, SIZES2 per publisher: bit mask of payload lengths in cells: 1 = one cell, 2 =
 * two, 4 = three; or SEQ1, SEQ2: a fixed sequence of lengths), OVERWRITE (0 block, 1
 * overwrite), TIMEOUTS, MAXDEATHS, KILLMASK, IDLE, CLOSE (bit s-1: subscriber s may close
 * early), END_AFTER (end() only after the publishers), ASSERTS (groups below), CATCHUP (1,
 * the default: catch_up as the implementations do it; 0: as they did before the fix, a mutant), and the mutants
 * NO_WRITING_CHECK (a subscriber does not re-read `writing` after copying), WRITING_LATE (a
 * publisher stores `writing` after the record's bytes), WRITING_BACK (`writing` may move back:
 * always stored as tail + size), SUB_NO_LOCK (subscribe reads tail and published without the
 * publish lock), NO_REPAIR (no repair of `published` after a dead publisher), NO_RECHECK (a
 * sleeper skips the re-check after raising its flag), NO_REAP (publishers never free dead
 * subscribers' slots).
 */

#ifndef NPUB
#define NPUB 1
#endif
#ifndef NSUB
#define NSUB 1
#endif
#ifndef MSGS
#define MSGS 2
#endif
/* messages of publisher 1 and 2 (default MSGS each) */
#ifndef MSGS1
#define MSGS1 MSGS
#endif
#ifndef MSGS2
#define MSGS2 MSGS
#endif
#if MSGS1 > MSGS || MSGS2 > MSGS
#error "MSGS1 and MSGS2 must be at most MSGS"
#endif
#ifndef CAP
#define CAP 2
#endif
#ifndef SIZES
#define SIZES 1
#endif
/* sizes of publisher 1 and 2 (default SIZES each) */
#ifndef SIZES1
#define SIZES1 SIZES
#endif
#ifndef SIZES2
#define SIZES2 SIZES
#endif
#define SIZES_OF(p) ((p) == 1 -> SIZES1 : SIZES2)
/* or a fixed sequence for publisher 1 and 2: message k's payload length in cells is bits
 * 2(k-1)..2k-1 of SEQ1 / SEQ2 (0: choose among SIZES1 / SIZES2) */
#ifndef SEQ1
#define SEQ1 0
#endif
#ifndef SEQ2
#define SEQ2 0
#endif
#define SEQ_OF(p) ((p) == 1 -> SEQ1 : SEQ2)
#ifndef OVERWRITE
#define OVERWRITE 0
#endif
#ifndef TIMEOUTS
#define TIMEOUTS 0
#endif
#ifndef MAXDEATHS
#define MAXDEATHS 0
#endif
/* which processes the Killer may kill: bit t-1 for process t (publishers and subscribers) */
#ifndef KILLMASK
#define KILLMASK 255
#endif
#ifndef IDLE
#define IDLE 0
#endif
#ifndef CLOSE
#define CLOSE 0
#endif
/* END_AFTER=1: the Closer calls end() only once every publisher finished (or died), so that
 * end() (which wakes publishers) cannot rescue a publisher held back for ever: progress then
 * depends on reaping dead subscribers */
#ifndef END_AFTER
#define END_AFTER 0
#endif
/* assertion groups: 1 = delivery (whole, the record published under that number, in order,
 * exactly once; in block mode never lapped), 2 = nothing is published after end(),
 * 4 = the end drains (a subscriber that sees ended + empty got every message published since it
 * subscribed, or was told how many it missed; nothing is published after), 8 = no
 * ERR_SHM_CORRUPT on a healthy topic, 16 = numbering (each record's number is its place in the
 * publish order; a subscriber starts at the number of the next record) */
#ifndef ASSERTS
#define ASSERTS 31
#endif
#define CHECK(g, e) assert(!(ASSERTS & (g)) || (e))
/* catch_up of a lapped subscriber: 0 = as topic.rs, lib/topic.ts and go/topic.go do it (head,
 * the number at head, writing): wrong when head == tail, see docs/models/README.md; 1 = the
 * proposed fix (tail first; head == tail: the next record is numbered `published`, if tail did
 * not move meanwhile) */
#ifndef CATCHUP
#define CATCHUP 1
#endif
#ifndef NO_WRITING_CHECK
#define NO_WRITING_CHECK 0
#endif
#ifndef WRITING_LATE
#define WRITING_LATE 0
#endif
#ifndef WRITING_BACK
#define WRITING_BACK 0
#endif
#ifndef SUB_NO_LOCK
#define SUB_NO_LOCK 0
#endif
#ifndef NO_REPAIR
#define NO_REPAIR 0
#endif
#ifndef NO_RECHECK
#define NO_RECHECK 0
#endif
#ifndef NO_REAP
#define NO_REAP 0
#endif

#define NT (NPUB + NSUB + 1)        /* processes: publishers, subscribers, closer */
#define CLOSER NT
#define MAXM (NPUB * MSGS)                 /* ids: (p-1)*MSGS + k, k <= MSGS */
#define MSGS_OF(p) ((p) == 1 -> MSGS1 : MSGS2)
#define SUBT(s) (NPUB + (s))         /* process of subscriber (slot) s */

#define AWAKE  0
#define ASLEEP 1
#define WOKEN  2
#define A_SUB 1
#define A_PUB 2

/* shared words */
bool ended;
byte tail, writing, head, published;
byte sub_sleepers, sub_event, pub_sleepers, pub_event;
byte plock;                        /* the publish lock: holder id, 0 = free */
byte cell_a[CAP], cell_b[CAP];     /* the ring */
byte sstate[NSUB+1];               /* slot state: odd while subscribed */
byte scur[NSUB+1];                 /* slot cursor */

/* model bookkeeping */
bool dead[NT+1];
bool done[NT+1];
byte fx[NT+1];
byte fxa[NT+1];
byte ndeaths;
byte pneed[NPUB+1];                /* a sleeping publisher's record size (for the LTL formulas) */

/* ghosts */
byte npub;                         /* records published (tail stores) */
byte porder[MAXM];                 /* message id of the i-th record published */
byte start[NSUB+1];                /* the record number a subscriber started at */
byte ndlv[NSUB+1];                 /* messages it delivered */
byte nmiss[NSUB+1];                /* messages it was told it missed */
bool got_end[NSUB+1];              /* it saw the end (ended and nothing left) */
bool any_end;                      /* some subscriber saw the end */

#define FIN(t) (done[t] || dead[t])
#define EVENT(a) ((a) == A_SUB -> sub_event : pub_event)
#define SUB_WAKEABLE(s) (ended || tail != scur[s])
#define SLOT_ROOM(s, n) ((sstate[s] & 1) == 0 || tail - scur[s] + (n) <= CAP)
#define SLOT_DEAD(s) ((sstate[s] & 1) && dead[SUBT(s)])
#if NSUB == 1
#define HAS_ROOM(n) SLOT_ROOM(1, n)
#define DEAD_HOLDS SLOT_DEAD(1)
#define SUBS_FIN FIN(SUBT(1))
#define SUB_STUCK(s) (fx[SUBT(s)] == ASLEEP && SUB_WAKEABLE(s))
#define ANY_SUB_STUCK SUB_STUCK(1)
#elif NSUB == 2
#define HAS_ROOM(n) (SLOT_ROOM(1, n) && SLOT_ROOM(2, n))
#define DEAD_HOLDS (SLOT_DEAD(1) || SLOT_DEAD(2))
#define SUBS_FIN (FIN(SUBT(1)) && FIN(SUBT(2)))
#define SUB_STUCK(s) (fx[SUBT(s)] == ASLEEP && SUB_WAKEABLE(s))
#define ANY_SUB_STUCK (SUB_STUCK(1) || SUB_STUCK(2))
#else
#error "NSUB must be 1 or 2"
#endif
#define PUB_WAKEABLE(p) (ended || HAS_ROOM(pneed[p]))
#define PUB_STUCK(p) (fx[p] == ASLEEP && PUB_WAKEABLE(p))
#if NPUB == 1
#define PUBS_FIN FIN(1)
#define ANY_PUB_STUCK PUB_STUCK(1)
#elif NPUB == 2
#define PUBS_FIN (FIN(1) && FIN(2))
#define ANY_PUB_STUCK (PUB_STUCK(1) || PUB_STUCK(2))
#else
#error "NPUB must be 1 or 2"
#endif
#define ALLDONE (PUBS_FIN && SUBS_FIN && done[CLOSER])

/* Death: a process body is BODY_x ... DIES_x(cleanup), i.e. `{ ... } unless { dead[me] ->
 * cleanup }`, so that a dead process does nothing more (cleanup only clears its locals, so that
 * equal states merge). For processes the Killer may not kill (MAXDEATHS=0, or not in KILLMASK)
 * the escape is left out: its guard reads a global, which would make every statement of the
 * process global and defeat Spin's statement merging and partial-order reduction (the same
 * behaviours, more states). */
#define PUB_MASK ((1 << NPUB) - 1)
#define SUB_MASK (((1 << NSUB) - 1) << NPUB)
#if MAXDEATHS > 0 && (KILLMASK & PUB_MASK)
#define BODY_P {
#define DIES_P(cleanup) } unless { atomic { dead[me] -> cleanup } }
#else
#define BODY_P
#define DIES_P(cleanup)
#endif
#if MAXDEATHS > 0 && (KILLMASK & SUB_MASK)
#define BODY_S {
#define DIES_S(cleanup) } unless { atomic { dead[me] -> cleanup } }
#else
#define BODY_S
#define DIES_S(cleanup)
#endif

/* ---- futex on the event words (as channel.pml) ------------------------------------------ */

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

/* wake(flag, event): if load(flag) != 0 && swap(flag, 0) != 0 { event += 1; wake ALL } (the
 * load and the swap in one step, as in channel.pml) */
inline wake_side(sleepers, event, addr) {
  atomic {
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

/* ---- the publish lock's holder ------------------------------------------------------------ */

/* repair() after taking the lock over from a dead holder: `published` = the number after the
 * last record between head and tail (reads of words only lock holders write, and a store of
 * `published`, which only lock holders access: part of the acquisition step) */
inline repair() {
  rt = tail; rp = head; rf = 0;
  CHECK(8, rt >= rp && rt - rp <= CAP);
  do
  :: rp < rt && rt - rp <= CAP ->
     rl = cell_a[rp % CAP];
     if
     :: rl <= CAP - 1 && rl + 1 <= rt - rp ->
        rs = cell_b[rp % CAP]; rf = 1;
        rp = rp + rl + 1
     :: else -> CHECK(8, 0); break                    /* ERR_SHM_CORRUPT */
     fi
  :: else -> break
  od;
  if
  :: rf -> published = rs + 1
  :: else -> skip
  fi;
  rt = 0; rp = 0; rl = 0; rs = 0; rf = 0
}

#define REPAIR_LOCALS byte rt, rp, rl, rs; bool rf;

/* the lock: test-and-set with takeover; odied = owner_died; then repair if it died */
#define TAKE_LOCK (plock == 0 || dead[plock]) -> odied = (plock != 0); plock = me; \
  if \
  :: odied && !NO_REPAIR -> repair() \
  :: else -> skip \
  fi; \
  odied = 0

/* One slot of slowest(tail): its state and, if subscribed, its cursor, in one step (see the
 * README: merging the two loads removes no behaviour); the furthest behind t goes to sl (0: no
 * subscriber) and how far to most. `strict` (under the lock): a cursor out of range is
 * ERR_SHM_CORRUPT; else (has_room, without the lock: the cursor may have moved past the tail
 * read before it) the answer is "no room" (bad). */
inline scan_slot(n, strict) {
  st = sstate[n];
  if
  :: st & 1 ->
     c = scur[n];
     if
     :: c <= t && t - c <= CAP ->
        if
        :: sl == 0 || t - c > most -> sl = n; most = t - c
        :: else -> skip
        fi
     :: else -> CHECK(8, !(strict)); bad = 1
     fi
  :: else -> skip
  fi;
  st = 0; c = 0
}

/* the whole scan, then DECIDE (local), one step per slot */
#if NSUB == 1
#define SCAN(strict, DECIDE) \
  atomic { sl = 0; most = 0; bad = 0; scan_slot(1, strict); DECIDE }
#else
#define SCAN(strict, DECIDE) \
  atomic { sl = 0; most = 0; bad = 0; scan_slot(1, strict) } \
  atomic { scan_slot(2, strict); DECIDE }
#endif

/* room_for: remember the lowest cursor; room if the slowest leaves need cells */
inline decide_room() {
  mc = t - most; mck = 1;
  ok = (sl == 0 || most + need <= CAP);
  if
  :: ok -> sl = 0; most = 0
  :: else -> skip
  fi
}

/* has_room (the sleeper's re-check): ready if the slowest leaves need cells */
inline decide_ready() {
  e = (!bad && (sl == 0 || most + need <= CAP));
  t = 0; sl = 0; most = 0; bad = 0
}

#define ID ((me - 1) * MSGS + k)

/* store writing = tail + need unless it is already further (it never moves back) */
inline store_writing() {
  atomic {
    w = writing;
    if
    :: WRITING_BACK || w < t || w - t > CAP || w - t < need -> writing = t + need
    :: else -> skip
    fi;
    w = 0
  }
}

proctype Publisher(byte me) {
  byte k = 1, ln, need, t, h, u, seq, w, x, r, ev, c, st, most, sl, mc;
  bool odied, e, ok, mck, res, bad;
  REPAIR_LOCALS
  BODY_P
    do
    :: atomic {
         k <= MSGS_OF(me) ->
         if
         :: SEQ_OF(me) != 0 -> ln = (SEQ_OF(me) >> (2 * (k - 1))) & 3
         :: SEQ_OF(me) == 0 && (SIZES_OF(me) & 1) -> ln = 1
         :: SEQ_OF(me) == 0 && (SIZES_OF(me) & 2) -> ln = 2
         :: SEQ_OF(me) == 0 && (SIZES_OF(me) & 4) -> ln = 3
         fi;
         need = ln + 1
       }
       do
       :: atomic {                                    /* lock (repair); ended; tail */
            TAKE_LOCK;
            e = ended;
            t = tail;
            if
            :: e -> plock = 0; t = 0                  /* ERR_SHM_CHANNEL_ENDED: unlock */
            :: else -> ok = (OVERWRITE || (mck && t - mc + need <= CAP))   /* room_for: remembered lowest cursor */
            fi
          }
          if
          :: e -> goto finished
          :: else -> skip
          fi;
          /* block mode, room not known: scan the table, reaping dead subscribers that hold it */
          do
          :: ok -> break
          :: else ->
             SCAN(1, decide_room());
             if
             :: ok -> break
             :: else ->                               /* reap_if_dead(sl) */
                st = sstate[sl];
                atomic {                              /* liveness check, then the CAS */
                  if
                  :: (st & 1) == 0 -> res = 1         /* freed meanwhile */
                  :: (st & 1) && dead[SUBT(sl)] && !NO_REAP ->
                     if
                     :: sstate[sl] == st -> sstate[sl] = st + 1    /* reaped + 1 */
                     :: else -> skip
                     fi;
                     res = 1
                  :: else -> res = 0
                  fi;
                  st = 0;
                  if
                  :: res -> res = 0; sl = 0; most = 0 /* scan again */
                  :: else -> break                    /* a live subscriber holds the room */
                  fi
                }
             fi
          od;
          if
          :: !ok ->                                   /* no room: unlock, sleep on pub_event */
             atomic { plock = 0; t = 0; sl = 0; most = 0 }
             ev = pub_event;
             pub_sleepers = 1;
             e = ended;                               /* ready(): ended || has_room(need) */
             if
             :: !e ->
                t = tail;
                SCAN(0, decide_ready())
             :: else -> skip
             fi;
             if
             :: !NO_RECHECK && e -> skip
             :: else ->
                pneed[me] = need;
                futex_wait(A_PUB, ev, ended || HAS_ROOM(need) || DEAD_HOLDS);
                pneed[me] = 0
             fi;
             atomic { ev = 0; e = 0 }
          :: else ->
             atomic {                                 /* move head past what we overwrite; store it */
               h = head;
               CHECK(8, h <= t && t - h <= CAP);
               u = t - h;
               do
               :: u + need > CAP ->
                  x = cell_a[h % CAP];
                  if
                  :: x <= CAP - 1 && x + 1 <= u -> h = h + x + 1; u = u - x - 1
                  :: else -> CHECK(8, 0); plock = 0; goto finished   /* ERR_SHM_CORRUPT */
                  fi
               :: else -> break
               od;
               seq = published;
               head = h;
               h = 0; u = 0; x = 0; ok = 0
             }
#if !WRITING_LATE
             store_writing();
#endif
             cell_a[t % CAP] = ln;                    /* the record: length, number, payload */
             cell_b[t % CAP] = seq;
             cell_a[(t + 1) % CAP] = ID;
             cell_b[(t + ln) % CAP] = ID;
#if WRITING_LATE
             store_writing();
#endif
             atomic {                                 /* publish: store tail */
               CHECK(2, !ended);                      /* nothing published after end() */
               CHECK(4, !any_end);                    /* nor after a subscriber saw the end */
               CHECK(16, seq == npub);                /* the number is its place in the order */
               porder[npub] = ID;
               npub++;
               tail = t + need
             }
             atomic { published = seq + 1; plock = 0; seq = 0; t = 0 }   /* count it; unlock */
             wake_side(sub_sleepers, sub_event, A_SUB);
             break
          fi
       od;
       k++
    :: else -> break
    od;
finished:
    atomic { done[me] = 1; k = 0; ln = 0; need = 0; e = 0; mc = 0; mck = 0 }
  DIES_P(k = 0; ln = 0; need = 0; t = 0; h = 0; u = 0; seq = 0; w = 0; x = 0; r = 0; ev = 0;
       c = 0; st = 0; most = 0; sl = 0; mc = 0; odied = 0; e = 0; ok = 0; mck = 0; res = 0;
       bad = 0; rt = 0; rp = 0; rl = 0; rs = 0; rf = 0; pneed[me] = 0)
}

/* ---- subscribers --------------------------------------------------------------------------- */

/* after advance()'s cursor store: in block mode, wake publishers waiting for room */
inline wake_publishers() {
  if
  :: !OVERWRITE -> wake_side(pub_sleepers, pub_event, A_PUB)
  :: else -> skip
  fi
}

/* catch_up(): lapped; continue from the oldest whole record, count what was missed */
inline catch_up() {
  do
#if CATCHUP
  :: t = tail;                                        /* the fix: tail before head */
     atomic {
       h = head;
       ok = (h == t);                                 /* no whole record: the next is numbered published */
       e = (h < t && t - h <= CAP)                    /* the oldest whole record is at h */
     }
     if
     :: ok ->
        num = published;
        atomic { ok = (tail == t); if :: ok -> break :: else -> t = 0; h = 0; num = 0 fi }
     :: e ->
        num = cell_b[h % CAP];
        atomic {
          w = writing; ok = (w >= h && w - h <= CAP); w = 0; e = 0;
          if :: ok -> break :: else -> t = 0; h = 0; num = 0 fi
        }
     :: else -> atomic { t = 0; h = 0 }               /* read them again */
     fi
#else
  :: h = head;                                        /* as topic.rs: head, its number, writing */
     num = cell_b[h % CAP];
     atomic {
       w = writing; ok = (w >= h && w - h <= CAP); w = 0;
       if :: ok -> break :: else -> h = 0; num = 0 fi      /* else read them again */
     }
#endif
  od;
  atomic {                                            /* missed += ..., advance(head, number), ERR_SHM_LAGGED */
    CHECK(1, OVERWRITE);                              /* block mode never laps a live subscriber */
    CHECK(4, num >= seq);                             /* missed = number at head - expected */
    nmiss[sl] = nmiss[sl] + num - seq;
    cur = h; seq = num; scur[sl] = cur;
    ok = 0; e = 0; t = 0; h = 0; num = 0
  }
  wake_publishers()
}

proctype Subscriber(byte me) {
  byte sl = me - NPUB;
  byte cur, seq, t, ln, num, id, chk, w, h, r, x, ev, st;
  bool odied, e, pl, ok;
  REPAIR_LOCALS
  BODY_S
#if SUB_NO_LOCK
    t = tail;                                         /* mutant: no lock */
    x = published;
    atomic { cur = t; seq = x; scur[sl] = cur; start[sl] = seq; t = 0; x = 0 }
    atomic { st = sstate[sl] + 1; sstate[sl] = st }
#else
    atomic {                                          /* claim_slot: under the lock */
      TAKE_LOCK;
      CHECK(16, published == npub);                   /* starts at the next record's number */
      cur = tail; seq = published; scur[sl] = cur;
      st = sstate[sl] + 1; sstate[sl] = st;
      start[sl] = seq;
      plock = 0
    }
#endif
    do
    :: (CLOSE & (1 << (sl - 1))) ->                  /* close (release_slot) */
       atomic {
         if
         :: sstate[sl] == st -> sstate[sl] = st + 1; ok = 1
         :: else -> ok = 0
         fi
       }
       if
       :: ok -> wake_side(pub_sleepers, pub_event, A_PUB)
       :: else -> skip
       fi;
       break
    :: e = ended;                                     /* look: ended, then tail */
       atomic {
         t = tail;
         if
         :: t == cur && e ->                          /* the end */
            CHECK(4, seq == npub); got_end[sl] = 1; any_end = 1; e = 0; t = 0;
            break
         :: else -> e = 0
         fi
       }
       if
       :: t == cur ->                                 /* empty: sleep_on(sub_sleepers, sub_event) */
          atomic { ev = sub_event; t = 0 }
          sub_sleepers = 1;
          e = ended;                                  /* ready(): ended || tail != cursor */
          if
          :: !e -> atomic { t = tail; e = (t != cur); t = 0 }
          :: else -> skip
          fi;
          if
          :: !NO_RECHECK && e -> skip
          :: else -> futex_wait(A_SUB, ev, SUB_WAKEABLE(sl))
          fi;
          atomic { ev = 0; e = 0 }
       :: t != cur && t - cur <= CAP ->
          ln = cell_a[cur % CAP];
          atomic {
            num = cell_b[cur % CAP];
            pl = (ln <= CAP - 1 && ln + 1 <= t - cur && num == seq)
          }
          if
          :: pl ->
             id = cell_a[(cur + 1) % CAP];
             chk = cell_b[(cur + ln) % CAP]
          :: else -> skip
          fi;
          atomic {
#if NO_WRITING_CHECK
            ok = 1;                                   /* mutant: no re-check */
#else
            w = writing;
            ok = (w >= cur && w - cur <= CAP);
            w = 0;
#endif
            if
            :: ok && pl ->                            /* the record is ours, whole: deliver it */
               CHECK(1, id == chk);                   /* whole */
               CHECK(1, num < npub && porder[num] == id);   /* the record published as number num */
               CHECK(1, seq == start[sl] + ndlv[sl] + nmiss[sl]);   /* in order, once */
               ndlv[sl]++
            :: ok && !pl ->                           /* ERR_SHM_CORRUPT */
               CHECK(8, 0)
            :: else -> skip
            fi;
            id = 0; chk = 0; num = 0; t = 0
          }
          if
          :: ok && pl ->
             atomic { cur = cur + ln + 1; seq++; scur[sl] = cur; ln = 0; pl = 0; ok = 0 }   /* advance */
             wake_publishers()
          :: ok && !pl -> break
          :: else ->
             atomic { ln = 0; pl = 0; ok = 0 }
             catch_up()
          fi
       :: t != cur && t - cur > CAP ->
          t = 0;
          catch_up()
       fi
    od;
    done[me] = 1
  DIES_S(cur = 0; seq = 0; t = 0; ln = 0; num = 0; id = 0; chk = 0; w = 0; h = 0; r = 0; x = 0;
       ev = 0; st = 0; odied = 0; e = 0; pl = 0; ok = 0; rt = 0; rp = 0; rl = 0; rs = 0; rf = 0)
}

proctype Closer() {
  byte me = CLOSER;
  byte w;
  bool odied;
  REPAIR_LOCALS
#if END_AFTER
  PUBS_FIN;                                           /* end() after the publishers */
#endif
  atomic {                                            /* end(): lock, repair, ended = 1, unlock */
    TAKE_LOCK;
    ended = 1;
    plock = 0
  }
  sub_event++;
  futex_wake_all(A_SUB);
  pub_event++;
  futex_wake_all(A_PUB);
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
       fi;
       dead[t] = 1; fx[t] = AWAKE; fxa[t] = 0; ndeaths++; t = 0
     }
#if IDLE
  :: break
#endif
  od
}

/* At the end: every subscriber that saw the end alive got every message published since it
 * subscribed (block mode), or got or was told it missed each of them (overwrite mode). */
proctype Accounting() {
  byte s;
end:
  atomic {
    ALLDONE ->
    s = 1;
    do
    :: s <= NSUB ->
       if
       :: got_end[s] && !dead[SUBT(s)] ->
          CHECK(4, ndlv[s] + nmiss[s] == npub - start[s]);
          CHECK(4, OVERWRITE || nmiss[s] == 0)
       :: else -> skip
       fi;
       s++
    :: else -> break
    od
  }
}

init {
  byte i;
  atomic {
    i = 1;
    do
    :: i <= NPUB -> run Publisher(i); i++
    :: else -> break
    od;
    do
    :: i <= NPUB + NSUB -> run Subscriber(i); i++
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

/* Progress: every publisher publishes all its messages or gets ENDED, every subscriber reaches
 * the end (or closes), end() completes (or the process died). */
ltl progress { <> ALLDONE }
/* No lost wake-up: no subscriber asleep forever while there is a record or the end, no
 * publisher asleep forever while it has room or the stream ended. */
ltl no_lost_wakeup { [] <> !(ANY_SUB_STUCK || ANY_PUB_STUCK) }
