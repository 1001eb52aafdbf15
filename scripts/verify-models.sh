#!/usr/bin/env bash
# Model-checks the Promela models in docs/models/ with Spin (see docs/models/README.md).
#
#   scripts/verify-models.sh          short configurations (about 3 minutes on 2 cores)
#   scripts/verify-models.sh --long   the short ones plus bigger configurations (much longer)
#
# Prints one line per property checked: PASS or FAIL, the model, the property, the
# configuration, the states stored and the seconds pan took. A property marked "must fail" is a
# mutant (a deliberately broken protocol) or a known-bad design: it passes when pan finds the
# violation, which shows the model can see that bug.
# Exits 1 if any check fails: a violation where none is expected (errors > 0: an assertion, an
# invalid end state, an acceptance cycle), no violation where one is expected, or a search that
# did not complete (memory or depth bound): an incomplete search proves nothing.
#
# Environment: VERIFY_JOBS pan runs at once (default 2), VERIFY_MEMLIM_MB memory bound of each
# run (default 2048 short, 8192 long), VERIFY_KEEP=1 keeps the work directory (pan sources,
# logs and counterexample trails) and prints where it is.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

long=0
for arg in "$@"; do
  case "$arg" in
    --long) long=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "verify-models: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

for tool in spin gcc; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "verify-models: '$tool' is not installed (Debian/Ubuntu: apt-get install -y spin gcc)" >&2
    exit 1
  fi
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
models="$root/docs/models"
jobs=${VERIFY_JOBS:-2}
# short runs are small: -O1 compiles pan twice as fast and runs it about as fast
if [ "$long" -eq 1 ]; then
  memlim=${VERIFY_MEMLIM_MB:-8192} opt=-O2
else
  memlim=${VERIFY_MEMLIM_MB:-2048} opt=-O1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/verify-models.XXXXXX")
if [ "${VERIFY_KEEP:-0}" = 1 ]; then
  echo "verify-models: work directory $work (kept)"
else
  trap 'rm -rf "$work"' EXIT
fi

# ---- the checks ------------------------------------------------------------------------------
# check KIND MODEL DEFINES EXPECT PROPERTIES [PAN_CFLAGS] [PAN_ARGS]
#   KIND        safety (assertions; pan -DSAFETY), ltl:NAME (LTL claim NAME on every path, fair
#               or not: a pass is the stronger result), ltlf:NAME (under weak fairness, pan -f)
#   EXPECT      pass, or fail (the run must find a violation: a mutant or a known-bad design)
#   PROPERTIES  ';'-separated names of the properties the run decides (one output line each)
#   PAN_CFLAGS  extra compile flags (-DCOLLAPSE: lossless state compression, for the big runs)
#   PAN_ARGS    extra pan arguments
kinds=() models_=() defines=() expects=() props=() cflags=() panargs=()
check() {
  kinds+=("$1"); models_+=("$2"); defines+=("$3"); expects+=("$4"); props+=("$5")
  cflags+=("${6:-}"); panargs+=("${7:-}")
}

lock_safety='lock: mutual exclusion (at most one live holder);lock: one taker per death (ownerDied once per death);lock: a live holder is never robbed;lock: the owner record names the holder'
chan_safety='channel: exactly once, whole, in publish order, never lost;channel: no send succeeds after end();channel: close drains (CLOSED only when empty, nothing published after)'
topic_safety='topic: whole, the record published under its number, in order, exactly once (never lapped in block mode);topic: nothing published after end();topic: the end drains (delivered + missed == published since subscribing);topic: no ERR_SHM_CORRUPT on a healthy topic;topic: numbering (published repaired after a dead publisher)'
prefixed() { # PREFIX PROPERTIES: "channel: x;channel: y" -> "channel: PREFIX x;channel: PREFIX y"
  local out="" p
  local -a parts
  IFS=';' read -r -a parts <<<"$2"
  for p in "${parts[@]}"; do out+="${out:+;}${p/: /: $1 }"; done
  printf '%s' "$out"
}

# lock.pml, short
check safety lock.pml "-DN=3 -DOPS=7 -DSPINS=0 -DTIMEOUTS=2 -DMAXDEATHS=2" pass "$lock_safety"
check ltl:no_lost_wakeup lock.pml "-DN=3 -DOPS=1 -DITER1=2 -DSPINS=1" pass \
  'lock: no lost wake-up, sync lock (never free forever while a thread sleeps)'
check ltl:progress lock.pml "-DN=3 -DOPS=1 -DITER1=2 -DSPINS=1" pass \
  'lock: progress, sync lock (every thread gets the lock)'
check ltl:no_lost_wakeup lock.pml "-DN=3 -DOPS1=1 -DITER1=2 -DOPS2=1 -DOPS3=4 -DCANCEL=4" pass \
  'lock: no lost wake-up, sync + cancellable lockAsync'
check ltl:progress lock.pml "-DN=3 -DOPS1=1 -DITER1=2 -DOPS2=1 -DOPS3=4 -DCANCEL=4" pass \
  'lock: progress, sync + cancellable lockAsync'
check ltlf:no_lost_wakeup lock.pml "-DN=3 -DOPS1=1 -DITER1=2 -DOPS2=1 -DOPS3=4 -DCANCEL=4 -DPASS_ON=0" fail \
  'lock: mutant PASS_ON=0 (a cancelled lockAsync drops the wake it consumed)'
check ltlf:no_lost_wakeup lock.pml "-DN=3 -DOPS1=1 -DITER1=2 -DOPS2=1 -DOPS3=4 -DCANCEL=4 -DPASS_ON=1" fail \
  'lock: PASS_ON=1 (passes the wake on only if the LAST waiter round was WOKEN)'
check ltl:progress lock.pml "-DN=3 -DOPS1=3 -DOPS2=1 -DOPS3=4 -DTIMEOUTS=2 -DMAXDEATHS=1" pass \
  'lock: progress with deaths and timeouts (a dead holder is taken over)'

# channel.pml, short. Consumers run the same code, so letting only the first one die
# (KILLMASK=2) loses nothing; producers differ only in the ids they send (KILLMASK=1).
check safety channel.pml "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=1" pass "$(prefixed '2 producers:' "$chan_safety")"
check safety channel.pml "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=2" pass "$(prefixed '2 producers, 2 slots:' "$chan_safety")"
check safety channel.pml "-DNPROD=1 -DNCONS=2 -DMSGS=1 -DCAP=1" pass "$(prefixed '2 consumers:' "$chan_safety")"
check safety channel.pml "-DNPROD=1 -DNCONS=1 -DMSGS=4 -DCAP=2" pass "$(prefixed '4 messages, 2 slots:' "$chan_safety")"
check safety channel.pml "-DNPROD=1 -DNCONS=2 -DMSGS=1 -DCAP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=2" pass \
  "$(prefixed 'consumer deaths:' "$chan_safety")"
check safety channel.pml "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1" pass \
  "$(prefixed 'producer deaths:' "$chan_safety")"
for config in "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=1" "-DNPROD=1 -DNCONS=2 -DMSGS=1 -DCAP=1"; do
  check ltl:no_lost_wakeup channel.pml "$config" pass \
    'channel: no lost wake-up (nobody asleep forever while its condition holds)'
  check ltl:progress channel.pml "$config" pass \
    'channel: progress (every send completes or fails CLOSED, every receiver reaches CLOSED)'
done
check ltl:progress channel.pml "-DNPROD=1 -DNCONS=1 -DMSGS=4 -DCAP=2" pass \
  'channel: progress (every send completes or fails CLOSED, every receiver reaches CLOSED)'
check ltl:progress channel.pml "-DNPROD=1 -DNCONS=2 -DMSGS=1 -DCAP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=2" pass \
  'channel: progress with consumer deaths and timeouts'
check safety channel.pml "-DEND_NO_LOCK=1 -DASSERTS=2" fail \
  'channel: mutant END_NO_LOCK (end() without the send lock): a send succeeds after end()'
check safety channel.pml "-DEND_NO_LOCK=1 -DASSERTS=4" fail \
  'channel: mutant END_NO_LOCK: a message is published after a consumer got CLOSED (stranded)'
check safety channel.pml "-DTAIL_FIRST=1 -DASSERTS=4" fail \
  'channel: mutant TAIL_FIRST (tail read before closed): CLOSED with a message left'
check ltlf:no_lost_wakeup channel.pml "-DNO_RECHECK=1" fail \
  'channel: mutant NO_RECHECK (no re-check after raising the sleepers flag): lost wake-up'

# peers.pml: 2 producers of 2 messages, a joiner reusing attach slots, one receiver.
check safety peers.pml "-DNPROD=2 -DMSGS=2" pass \
  'peers: a receiver stops only when every producer that had published is gone and all it sent was consumed'
check ltlf:stops peers.pml "-DNPROD=2 -DMSGS=2" pass 'peers: the receiver stops once every producer died or closed'
check safety peers.pml "-DANNOUNCE_LATE=1" fail \
  'peers: mutant ANNOUNCE_LATE (announce after the first publish): stops while a producer lives'
check safety peers.pml "-DTAIL_FIRST=1" fail \
  'peers: mutant TAIL_FIRST (ring read before the peers): stops with a message left'
check ltlf:stops peers.pml "-DNO_JOIN=1" fail \
  "peers: mutant NO_JOIN (an opener keeps its slot's old bits): waits forever on a dead producer's slot"

# topic.pml, short. CATCHUP=1 (the default) is catch_up as implemented; CATCHUP=0, the version
# before the fix (docs/models/README.md), passes while no publish removes every record (records
# of at most half the ring) and must fail otherwise (the mutant checks).
t1="-DNPUB=1 -DNSUB=1 -DMSGS=3 -DCAP=2"                 # records fill the ring: every publish laps
check safety topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=2" pass "$(prefixed 'block, 2 publishers:' "$topic_safety")"
check safety topic.pml "-DNPUB=1 -DNSUB=2 -DMSGS=1 -DCAP=2" pass "$(prefixed 'block, 2 subscribers:' "$topic_safety")"
check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=3 -DCAP=4 -DSIZES=3" pass \
  "$(prefixed 'block, 3 messages of 2 sizes:' "$topic_safety")"
check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=3 -DCAP=4 -DOVERWRITE=1 -DCATCHUP=0" pass \
  "$(prefixed 'overwrite, records of half the ring, catch_up before the fix:' "$topic_safety")"
check safety topic.pml "$t1 -DOVERWRITE=1 -DCATCHUP=1" pass \
  "$(prefixed 'overwrite, records filling the ring, catch_up:' "$topic_safety")"
check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=3 -DCAP=4 -DSIZES=5 -DOVERWRITE=1 -DCATCHUP=1" pass \
  "$(prefixed 'overwrite, 2 sizes, catch_up:' "$topic_safety")"
check safety topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=2 -DOVERWRITE=1 -DCATCHUP=1" pass \
  "$(prefixed 'overwrite, 2 publishers, catch_up:' "$topic_safety")"
check safety topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=2 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1" pass \
  "$(prefixed 'block, publisher deaths:' "$topic_safety")"
check safety topic.pml "$t1 -DOVERWRITE=1 -DCATCHUP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1" pass \
  "$(prefixed 'overwrite, publisher deaths, catch_up:' "$topic_safety")"
check safety topic.pml "$t1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=2" pass \
  "$(prefixed 'block, subscriber deaths:' "$topic_safety")"
# END_AFTER=1: end() only once the publishers are done, so that it cannot rescue a publisher
# held back for ever (end() wakes publishers): progress then rests on closes and reaping
for config in "$t1" "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=2" "-DNPUB=1 -DNSUB=2 -DMSGS=1 -DCAP=2" "$t1 -DCLOSE=1 -DEND_AFTER=1"; do
  check ltl:no_lost_wakeup topic.pml "$config" pass \
    'topic: no lost wake-up (no subscriber asleep with a record there, no publisher asleep with room)'
  check ltl:progress topic.pml "$config" pass \
    'topic: progress (every publish completes or fails ENDED, every subscriber reaches the end)'
done
check ltl:progress topic.pml "$t1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=2 -DEND_AFTER=1" pass \
  'topic: progress with subscriber deaths (a dead subscriber is reaped, the publisher goes on)'
check ltl:progress topic.pml "$t1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1 -DEND_AFTER=1" pass \
  'topic: progress with publisher deaths (the publish lock is taken over, published repaired)'
check safety topic.pml "$t1 -DOVERWRITE=1 -DCATCHUP=1 -DNO_WRITING_CHECK=1 -DASSERTS=1" fail \
  'topic: mutant NO_WRITING_CHECK (no writing re-check after copying): a torn record is delivered'
check safety topic.pml "$t1 -DOVERWRITE=1 -DCATCHUP=1 -DWRITING_LATE=1 -DASSERTS=1" fail \
  'topic: mutant WRITING_LATE (writing stored after the record bytes): a torn record is delivered'
check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=2 -DCAP=2 -DSUB_NO_LOCK=1 -DASSERTS=1" fail \
  'topic: mutant SUB_NO_LOCK (subscribe without the publish lock): block mode laps a live subscriber'
check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=2 -DCAP=2 -DSUB_NO_LOCK=1 -DASSERTS=8" fail \
  'topic: mutant SUB_NO_LOCK: tail and published from two publishes give ERR_SHM_CORRUPT'
check safety topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=2 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1 -DNO_REPAIR=1 -DASSERTS=16" fail \
  'topic: mutant NO_REPAIR (published not repaired after a dead publisher): two records, one number'
check ltlf:no_lost_wakeup topic.pml "$t1 -DNO_RECHECK=1" fail \
  'topic: mutant NO_RECHECK (no re-check after raising the sleepers flag): lost wake-up'
check ltlf:progress topic.pml "$t1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=2 -DEND_AFTER=1 -DNO_REAP=1" fail \
  'topic: mutant NO_REAP (dead subscribers never reaped): the publisher waits for ever'
check safety topic.pml "$t1 -DTIMEOUTS=0 -DMAXDEATHS=1 -DKILLMASK=2 -DEND_AFTER=1" fail \
  'topic: sanity: without timeouts a publisher sleeps for ever behind a dead subscriber (invalid end state)'
check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=2 -DCAP=2 -DOVERWRITE=1 -DCATCHUP=0 -DASSERTS=8" fail \
  'topic: mutant CATCHUP=0 (catch_up before the fix): at head == tail it reads a stale number (ERR_SHM_CORRUPT)'

if [ "$long" -eq 1 ]; then
  # lock.pml, long
  check safety lock.pml "-DN=3 -DOPS=7 -DSPINS=1 -DTIMEOUTS=1 -DMAXDEATHS=2 -DCANCEL=4" pass \
    "$(prefixed 'spin phase, cancel:' "$lock_safety")" -DCOLLAPSE
  check ltl:no_lost_wakeup lock.pml "-DN=3 -DITER=2 -DOPS1=1 -DOPS2=3 -DOPS3=4 -DCANCEL=4" pass \
    'lock: no lost wake-up, 2 operations per thread' -DCOLLAPSE
  check ltl:progress lock.pml "-DN=3 -DITER=2 -DOPS1=1 -DOPS2=3 -DOPS3=4 -DCANCEL=4" pass \
    'lock: progress, 2 operations per thread' -DCOLLAPSE
  check ltl:no_lost_wakeup lock.pml "-DN=3 -DOPS1=5 -DITER1=2 -DOPS2=1 -DOPS3=4 -DCANCEL=5" pass \
    'lock: no lost wake-up, two cancellable lockAsync threads'
  check ltl:no_lost_wakeup lock.pml "-DN=3 -DOPS1=1 -DITER1=2 -DOPS2=5 -DOPS3=4 -DCANCEL=6" pass \
    'lock: no lost wake-up, two cancellable lockAsync threads (other roles)'
  check ltl:no_lost_wakeup lock.pml "-DN=4 -DOPS=1" pass \
    'lock: no lost wake-up, 4 sync threads' -DCOLLAPSE
  check ltl:no_lost_wakeup lock.pml "-DN=3 -DOPS1=1 -DITER1=2 -DOPS2=1 -DOPS3=4 -DCANCEL=4 -DPASS_ON=3" pass \
    'lock: PASS_ON=3 (a cancelled lockAsync always passes a wake on): no lost wake-up'
  check ltl:progress lock.pml "-DN=3 -DOPS1=3 -DOPS2=1 -DOPS3=4 -DCANCEL=4 -DTIMEOUTS=2 -DMAXDEATHS=1" pass \
    'lock: progress with deaths, timeouts and cancellation'
  check ltlf:progress lock.pml "-DN=3 -DOPS1=3 -DOPS2=1 -DOPS3=4 -DCANCEL=4 -DTIMEOUTS=1 -DMAXDEATHS=1" pass \
    'lock: progress with deaths and spurious timeouts (weak fairness)'
  check ltl:progress lock.pml "-DN=3 -DOPS1=3 -DOPS2=1 -DOPS3=4 -DTIMEOUTS=2 -DMAXDEATHS=2" pass \
    'lock: progress with two deaths and timeouts'
  check ltlf:progress lock.pml "-DN=3 -DOPS1=3 -DOPS2=1 -DOPS3=4 -DTIMEOUTS=0 -DMAXDEATHS=1" fail \
    'lock: sanity: without timeouts a dead holder blocks its waiters forever'

  # channel.pml, long
  check safety channel.pml "-DNPROD=1 -DNCONS=2 -DMSGS=2 -DCAP=1" pass \
    "$(prefixed '2 consumers, 2 messages:' "$chan_safety")" -DCOLLAPSE
  check safety channel.pml "-DNPROD=1 -DNCONS=2 -DMSGS=2 -DCAP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=2" pass \
    "$(prefixed 'consumer deaths, 2 messages:' "$chan_safety")" -DCOLLAPSE
  check safety channel.pml "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=1 -DTIMEOUTS=2 -DMAXDEATHS=2 -DKILLMASK=3" pass \
    "$(prefixed 'two producer deaths:' "$chan_safety")" -DCOLLAPSE
  for config in "-DNPROD=1 -DNCONS=2 -DMSGS=2 -DCAP=1" "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=2"; do
    check ltl:no_lost_wakeup channel.pml "$config" pass \
      'channel: no lost wake-up (nobody asleep forever while its condition holds)' -DCOLLAPSE
    check ltl:progress channel.pml "$config" pass \
      'channel: progress (every send completes or fails CLOSED, every receiver reaches CLOSED)' -DCOLLAPSE
  done
  check ltl:progress channel.pml "-DNPROD=2 -DNCONS=1 -DMSGS=1 -DCAP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1" pass \
    'channel: progress with producer deaths and timeouts'
  check ltlf:progress channel.pml "-DNPROD=1 -DNCONS=2 -DMSGS=1 -DCAP=1 -DTIMEOUTS=1 -DMAXDEATHS=1 -DKILLMASK=2" pass \
    'channel: progress with consumer deaths and spurious timeouts (weak fairness)' -DCOLLAPSE

  # topic.pml, long
  t22="-DNPUB=1 -DNSUB=2 -DMSGS=2 -DCAP=2"
  check safety topic.pml "$t22" pass "$(prefixed 'block, 2 subscribers, 2 messages:' "$topic_safety")" -DCOLLAPSE
  check safety topic.pml "$t22 -DOVERWRITE=1 -DCATCHUP=1" pass \
    "$(prefixed 'overwrite, 2 subscribers, 2 messages, catch_up:' "$topic_safety")" -DCOLLAPSE
  check safety topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=4 -DSIZES=5 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1" pass \
    "$(prefixed 'block, publisher deaths, 2 sizes:' "$topic_safety")" -DCOLLAPSE
  check safety topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=4 -DSIZES=5 -DOVERWRITE=1 -DCATCHUP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1" pass \
    "$(prefixed 'overwrite, publisher deaths, 2 sizes, catch_up:' "$topic_safety")" -DCOLLAPSE
  # publisher 1: a half-ring record, then a whole-ring one (it may die writing it over the first);
  # publisher 2: a half-ring record after it
  tback="-DNPUB=2 -DNSUB=1 -DMSGS=2 -DMSGS2=1 -DCAP=4 -DSEQ1=13 -DSEQ2=1 -DOVERWRITE=1 -DCATCHUP=1 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1"
  check safety topic.pml "$tback" pass \
    "$(prefixed 'overwrite, a dead publisher got further than the next one, catch_up:' "$topic_safety")" -DCOLLAPSE
  check safety topic.pml "$tback -DWRITING_BACK=1 -DASSERTS=1" fail \
    'topic: mutant WRITING_BACK (writing moves back after a dead publisher): a torn record is delivered' -DCOLLAPSE
  check ltl:no_lost_wakeup topic.pml "$t22" pass \
    'topic: no lost wake-up, 2 subscribers, 2 messages' -DCOLLAPSE
  check ltl:no_lost_wakeup topic.pml "$t22 -DCLOSE=1 -DEND_AFTER=1" pass \
    'topic: no lost wake-up, 2 subscribers, one of them closing' -DCOLLAPSE
  check ltl:progress topic.pml "-DNPUB=2 -DNSUB=1 -DMSGS=1 -DCAP=2 -DTIMEOUTS=2 -DMAXDEATHS=1 -DKILLMASK=1 -DEND_AFTER=1" pass \
    'topic: progress with publisher deaths, 2 publishers (the survivor takes the lock over)' -DCOLLAPSE
  check ltlf:progress topic.pml "$t1 -DTIMEOUTS=1 -DMAXDEATHS=1 -DKILLMASK=2 -DEND_AFTER=1" pass \
    'topic: progress with subscriber deaths and spurious timeouts (weak fairness)' -DCOLLAPSE
  check ltlf:progress topic.pml "$t1 -DTIMEOUTS=0 -DMAXDEATHS=1 -DKILLMASK=2 -DEND_AFTER=1" fail \
    'topic: sanity: without timeouts a dead subscriber holds the publisher back for ever'
  check safety topic.pml "-DNPUB=1 -DNSUB=1 -DMSGS=3 -DCAP=4 -DSIZES=5 -DOVERWRITE=1 -DCATCHUP=0 -DASSERTS=8" fail \
    'topic: mutant CATCHUP=0 with records of 2 sizes: catch_up at head == tail (ERR_SHM_CORRUPT)'
fi

# ---- running them ----------------------------------------------------------------------------
run_one() { # index
  local i=$1 dir="$work/run$1" kind=${kinds[$1]} claim="" pan_args=(-m2000000) cc=(-w "$opt")
  local -a defs
  read -r -a defs <<<"${defines[$i]}"
  mkdir -p "$dir"
  cp "$models/${models_[$i]}" "$dir/"
  case "$kind" in
    safety) cc+=(-DSAFETY -DNOCLAIM) ;;
    ltl:*) claim=${kind#ltl:}; defs+=(-DIDLE=1); pan_args+=(-a -N "$claim") ;;
    ltlf:*) claim=${kind#ltlf:}; defs+=(-DIDLE=1); cc+=(-DNFAIR=3); pan_args+=(-a -f -N "$claim") ;;
  esac
  cc+=("-DMEMLIM=$memlim" -DVECTORSZ=4096)
  local -a extra=() more=()
  if [ -n "${cflags[$i]}" ]; then read -r -a extra <<<"${cflags[$i]}"; fi
  if [ -n "${panargs[$i]}" ]; then read -r -a more <<<"${panargs[$i]}"; fi
  pan_args+=("${more[@]}")
  (
    cd "$dir"
    spin "${defs[@]}" -a "${models_[$i]}" >spin.log 2>&1 || { echo "spin -a failed" >status; exit 0; }
    gcc "${cc[@]}" "${extra[@]}" -o pan pan.c >gcc.log 2>&1 || { echo "gcc failed" >status; exit 0; }
    ./pan "${pan_args[@]}" >pan.log 2>&1 || true
    echo finished >status
  )
}

total=${#kinds[@]}
echo "verify-models: $total model-checking runs ($([ "$long" -eq 1 ] && echo long || echo short) mode, $jobs at a time)"
start=$SECONDS
running=0
for ((i = 0; i < total; i++)); do
  run_one "$i" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

# ---- results ---------------------------------------------------------------------------------
failures=0
lines=0
for ((i = 0; i < total; i++)); do
  dir="$work/run$i"
  log="$dir/pan.log"
  status=$(cat "$dir/status" 2>/dev/null || echo "did not run")
  errors="" states="?" secs="?" verdict="" detail=""
  if [ "$status" = finished ]; then
    errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$log" | tail -1)
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$log" | tail -1)
    secs=$(sed -n 's/^pan: elapsed time \([0-9.e+]*\) seconds.*/\1/p' "$log" | tail -1)
    found=$(grep -o -m1 -E 'assertion violated.*|invalid end state|acceptance cycle|non-progress cycle' "$log" || true)
    incomplete=$(grep -o -m1 -E 'reached -DMEMLIM bound|out of memory|max search depth too small|too many processes' "$log" || true)
    if [ -n "$incomplete" ]; then
      verdict=FAIL detail="search incomplete ($incomplete): raise VERIFY_MEMLIM_MB or shrink the configuration"
    elif [ -z "$errors" ]; then
      verdict=FAIL detail="pan did not finish: $(tail -1 "$log")"
    elif [ "${expects[$i]}" = pass ]; then
      if [ "$errors" = 0 ]; then verdict=PASS detail="holds"; else verdict=FAIL detail="violated: $found"; fi
    else
      if [ "$errors" != 0 ]; then verdict=PASS detail="must fail, fails: $found"; else verdict=FAIL detail="must fail but holds: the model no longer sees this bug"; fi
    fi
  else
    verdict=FAIL detail="$status (see ${dir#"$work"/}/*.log)"
  fi
  if [ "$verdict" = FAIL ]; then failures=$((failures + 1)); fi
  claim=${kinds[$i]}
  config="${models_[$i]} ${defines[$i]}${cflags[$i]:+ ${cflags[$i]}}${panargs[$i]:+ ${panargs[$i]}} [$claim]"
  IFS=';' read -r -a names <<<"${props[$i]}"
  for name in "${names[@]}"; do
    printf '%s  %s: %s  {%s; %s states, %ss}\n' "$verdict" "$name" "$detail" "$config" "$states" "$secs"
    lines=$((lines + 1))
  done
done

echo "verify-models: $lines properties in $total runs, $((SECONDS - start)) s wall clock"
if [ "$failures" -gt 0 ]; then
  echo "verify-models: $failures run(s) FAILED (rerun with VERIFY_KEEP=1 to keep pan logs and trails)" >&2
  exit 1
fi
echo "verify-models: all properties verified"
