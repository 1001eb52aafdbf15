/*
 * peers.pml: channel peers (docs/CHANNELS.md, "Peers"), for the Spin model checker: role bits
 * per attach slot, and a receiver that stops once every producer is gone.
 *
 * Processes: producers 1..NPROD each attach (take a free attach slot, reaping the slots of
 * dead processes, in one step: the attach mutex), join (clear the slot's role bits), announce
 * (set the slot's producer bit, then `seen`), publish MSGS messages, and then either die (the
 * slot stays, held by a dead pid) or close (free the slot). A joiner attaches later, possibly in
 * the slot of a dead producer, joins, and stays alive as a consumer only. One receiver consumes
 * and, finding the ring drained, judges the producers slot by slot (a scan of several steps, as
 * the code reads the words one at a time), then re-reads the ring and stops if it is still
 * drained.
 *
 * Properties:
 *  - safety: when the receiver stops, every producer that had published before its last scan
 *    began is no longer live (dead or closed), and every message of such a producer was
 *    consumed: nothing it sent is stranded, and it sends nothing more.
 *  - ltl stops: the receiver stops (all producers end in the model), under weak fairness.
 *
 * Mutants: ANNOUNCE_LATE (a producer announces after its first publish), TAIL_FIRST (the
 * receiver re-reads the ring before judging, not after), NO_JOIN (an opener does not clear its
 * slot's bits: the receiver waits forever on a consumer that reuses a dead producer's slot).
 */

#ifndef NPROD
#define NPROD 2
#endif
#ifndef MSGS
#define MSGS 2
#endif
#define SLOTS 3                     /* the stop assertion names the three slots */
#ifndef ANNOUNCE_LATE
#define ANNOUNCE_LATE 0
#endif
#ifndef TAIL_FIRST
#define TAIL_FIRST 0
#endif
#ifndef NO_JOIN
#define NO_JOIN 0
#endif

#define NPROC (NPROD + 1)           /* producers 1..NPROD, the joiner NPROD+1 */
#define JOINER (NPROD + 1)
#define RING (NPROD * MSGS)

/* the attach table and the role bits */
byte slot_pid[SLOTS];               /* 0: free, else a process number */
bit prod_bit[SLOTS];
bit cons_bit[SLOTS];
bit seen;                           /* a producer announced itself once */
bool alive[NPROC + 1];

/* the ring: who published each message; head and tail count messages */
byte ring[RING];
byte head, tail;
byte published_by[NPROC + 1];
byte consumed_from[NPROC + 1];

/* the receiver's bookkeeping (for the assertions only) */
bool stopped;
bool published_before_scan[NPROC + 1];

/* one step: the attach mutex is held for the whole attach */
inline attach(me, my_slot, s) {
  atomic {
    s = 0;
    do
    :: s < SLOTS -> if :: slot_pid[s] != 0 && !alive[slot_pid[s]] -> slot_pid[s] = 0 :: else -> skip fi; s++
    :: else -> break
    od;
    s = 0;
    do
    :: s < SLOTS && slot_pid[s] == 0 -> slot_pid[s] = me; my_slot = s; break
    :: s < SLOTS && slot_pid[s] != 0 -> s++
    :: s == SLOTS -> assert(false) /* SLOTS is sized for every process */
    od
  }
}

inline join(my_slot) {
#if NO_JOIN
  skip
#else
  atomic { prod_bit[my_slot] = 0; cons_bit[my_slot] = 0 }   /* one atomic AND */
#endif
}

inline announce(my_slot) {
  prod_bit[my_slot] = 1;
  seen = 1
}

inline publish(me) {
  atomic {
    assert(!(stopped && published_before_scan[me]));   /* sends nothing after the stop */
    ring[tail] = me;
    tail++;
    published_by[me]++
  }
}

proctype Producer(byte me) {
  byte my_slot, s;
  byte n = 0;
  alive[me] = 1;
  attach(me, my_slot, s);
  join(my_slot);
#if !ANNOUNCE_LATE
  announce(my_slot);
#endif
  do
  :: n < MSGS ->
     publish(me);
#if ANNOUNCE_LATE
     if :: n == 0 -> announce(my_slot) :: else -> skip fi;
#endif
     n++
  :: else -> break
  od;
  if
  :: alive[me] = 0                  /* dies: its slot stays, held by a dead pid */
  :: slot_pid[my_slot] = 0          /* closes: frees its slot */
  fi
}

proctype Joiner() {
  byte my_slot, s;
  alive[JOINER] = 1;
  attach(JOINER, my_slot, s);
  join(my_slot);
  cons_bit[my_slot] = 1             /* a consumer, never a producer */
}

proctype Receiver() {
  byte s, p, q;
  bool gone, drained;
  do
  :: atomic { head < tail -> consumed_from[ring[head]]++; head++ }
  :: head == tail ->
#if TAIL_FIRST
     drained = (head == tail);
#endif
     /* the scan starts: note who has published by now */
     atomic {
       p = 1;
       do
       :: p <= NPROC -> published_before_scan[p] = (published_by[p] > 0); p++
       :: else -> break
       od
     }
     gone = seen;
     s = 0;
     do
     :: s < SLOTS ->
        if
        :: prod_bit[s] ->
           q = slot_pid[s];          /* the role word, then the slot's pid, then its liveness */
           if
           :: q != 0 && alive[q] -> gone = 0
           :: else -> skip
           fi
        :: else -> skip
        fi;
        s++
     :: else -> break
     od;
#if !TAIL_FIRST
     drained = (head == tail);
#endif
     if
     :: gone && drained ->
        atomic {
          stopped = 1;
          p = 1;
          do
          :: p <= NPROD ->
             assert(!published_before_scan[p] ||
                    ((!alive[p] || !(slot_pid[0] == p || slot_pid[1] == p || slot_pid[2] == p)) &&
                     consumed_from[p] == published_by[p]));
             p++
          :: else -> break
          od
        };
        break
     :: else -> skip
     fi
  od
}

init {
  atomic {
    byte i = 1;
    do
    :: i <= NPROD -> run Producer(i); i++
    :: else -> break
    od;
    run Joiner();
    run Receiver()
  }
}

ltl stops { <> stopped }
