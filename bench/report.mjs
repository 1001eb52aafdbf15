// The benchmark report: from the JSON of one `npm run bench` (bench/results/*.json), prints the
// ratios shmkit is held to and writes docs/benchmarks.md, so every number in the docs comes from
// one dated run.
//
//   node bench/report.mjs [--results DIR] [--write]     (npm run bench does both)
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const here = (file) => fileURLToPath(new URL(file, import.meta.url))
const resultsIndex = process.argv.indexOf('--results')
const dir = resultsIndex > 0 ? process.argv[resultsIndex + 1] : here('./results')
const write = process.argv.includes('--write')
const load = (name) => JSON.parse(fs.readFileSync(`${dir}/${name}.json`, 'utf8'))
const locks = load('locks')
const channels = load('channels')
const segments = load('segments')
const maps = fs.existsSync(`${dir}/maps.json`) ? load('maps') : undefined
const topics = fs.existsSync(`${dir}/topics.json`) ? load('topics') : undefined
const bridge = fs.existsSync(`${dir}/bridge.json`) ? load('bridge') : undefined

const rate = (r) => r.median
const fmt = (perSecond) =>
  perSecond >= 1e6
    ? `${(perSecond / 1e6).toFixed(2)} M/s`
    : perSecond >= 1e3
      ? `${(perSecond / 1e3).toFixed(1)} k/s`
      : `${perSecond.toFixed(0)} /s`
const x = (ratio) => `${ratio.toFixed(2)}x`
const pct = (share) => `${(share * 100).toFixed(0)}%`

// ------------------------------------------------------------------------------- the goals
const u = locks.results.uncontended
const c = locks.results.contended
const t64 = channels.results.throughput[64]
const rtt64 = channels.results.roundTrip[64]
const goals = []
function goal(what, ratio, target, detail, { atMost = false } = {}) {
  const met = ratio === undefined ? undefined : atMost ? ratio <= target : ratio >= target
  goals.push({ what, value: ratio, target: `${atMost ? '<=' : '>='} ${target}${atMost ? ' µs' : 'x'}`, met, detail })
}
goal(
  '`lock({ timeout: 1000 })` vs `lock()`',
  rate(u.shmkitTimeout) / rate(u.shmkit),
  0.9,
  `${fmt(rate(u.shmkitTimeout))} vs ${fmt(rate(u.shmkit))}`,
)
if (t64.shmkitPlain) {
  goal(
    '`send(p, { timeout })` + `recv({ timeout })` vs without options (64 B, 2 processes)',
    rate(t64.shmkit) / rate(t64.shmkitPlain),
    0.9,
    `${fmt(rate(t64.shmkit))} vs ${fmt(rate(t64.shmkitPlain))}`,
  )
}
goal(
  'lock+unlock uncontended vs a futex mutex on a SharedArrayBuffer',
  rate(u.shmkitTimeout) / rate(u.sab),
  0.9,
  `${fmt(rate(u.shmkitTimeout))} vs ${fmt(rate(u.sab))}`,
)
for (const n of [2, 4, 8]) {
  const r = c[n]
  if (!r) continue
  const share = 1 / n / (n === 2 ? 2.5 : 2.5) // 20% of 2, 10% of 4, 5% of 8
  goal(
    `lock+inc+unlock, ${n} processes vs the SAB mutex in ${n} worker threads`,
    rate(r.shmkit) / rate(r.sab),
    1.0,
    `${fmt(rate(r.shmkit))} vs ${fmt(rate(r.sab))}; smallest share ${pct(r.shmkit.minShare)} (goal >= ${pct(share)})`,
  )
  if (r.pthread)
    goal(
      `lock+inc+unlock, ${n} processes vs a C pthread_mutex (PROCESS_SHARED), ${n} processes`,
      rate(r.shmkit) / rate(r.pthread),
      1.0,
      `${fmt(rate(r.shmkit))} vs ${fmt(rate(r.pthread))}`,
    )
}
goal(
  '64 B messages, `{ timeout }` on every call, vs a Unix socket with length-prefixed frames',
  rate(t64.shmkit) / rate(t64.unixSocket),
  6,
  `${fmt(rate(t64.shmkit))} vs ${fmt(rate(t64.unixSocket))}`,
)
if (t64.shmkitBatch)
  goal(
    '64 B messages in batches of 64 (sendMany/recvMany) vs the Unix socket',
    rate(t64.shmkitBatch) / rate(t64.unixSocket),
    6,
    `${fmt(rate(t64.shmkitBatch))} per message`,
  )
goal('64 B round trip p50, awake peer', rtt64.shmkit.p50.median, 2, `${rtt64.shmkit.p50.median.toFixed(1)} µs`, {
  atMost: true,
})

if (maps) {
  const m = maps.results.contenders
  const mapGoal = (what, mine, theirs, target) =>
    mine && theirs && goal(what, rate(mine) / rate(theirs), target, `${fmt(rate(mine))} vs ${fmt(rate(theirs))}`)
  mapGoal('SharedMap `get` vs lmdb-js `get`', m.shmkit.get, m.lmdb?.get, 2)
  mapGoal('SharedMap `get`, 2 processes reading, vs lmdb-js', m.shmkit.twoReaders, m.lmdb?.twoReaders, 2)
  mapGoal('SharedMap `set` vs lmdb-js `putSync`', m.shmkit.set, m.lmdb?.set, 10)
  mapGoal('SharedMap `set` vs lmdb-js `put` awaited in batches', m.shmkit.set, m.lmdb?.setBatched, 2)
  mapGoal('SharedMap `get` vs Redis awaited `get` (Unix socket)', m.shmkit.get, m.redis?.get, 20)
  mapGoal('SharedMap `set` vs Redis awaited `set` (Unix socket)', m.shmkit.set, m.redis?.set, 20)
}

if (topics) {
  const tp = topics.results.contenders
  for (const [key, label] of [
    ['socket', 'a Unix socket per subscriber'],
    ['ipc', '`process.send` to each child'],
    ['redis', 'Redis pub/sub'],
  ]) {
    if (!tp[key]) continue
    goal(
      `Topic fan-out, 64 B, 1 publisher to ${topics.results.subscribers} processes, vs ${label}`,
      rate(tp.shmkit[64]) / rate(tp[key][64]),
      key === 'socket' ? 10 : 1,
      `${fmt(rate(tp.shmkit[64]))} vs ${fmt(rate(tp[key][64]))} deliveries`,
    )
  }
  const cost = topics.results.publisherCost
  goal(
    'Topic publisher alone, 16 subscribers vs 1 (the publish cost does not grow)',
    rate(cost[16]) / rate(cost[1]),
    0.8,
    `${fmt(rate(cost[16]))} vs ${fmt(rate(cost[1]))} publishes`,
  )
}

const machine = `${locks.cpus} cores, ${locks.cpu ?? channels.cpu ?? 'unknown CPU'}, Node ${locks.node}`
console.log(`\nshmkit's goals, from the run of ${locks.date.slice(0, 10)} (${machine})\n`)
const width = Math.max(...goals.map((g) => g.what.length))
for (const g of goals) {
  const value = g.value === undefined ? '-' : g.target.endsWith('µs') ? g.value.toFixed(1) : x(g.value)
  console.log(
    `${g.met ? 'met ' : 'MISS'}  ${g.what.padEnd(width)}  ${value.padStart(7)}  (goal ${g.target})  ${g.detail}`,
  )
}

if (!write) process.exit(0)

// ------------------------------------------------------------------------------- the page
const sizeLabel = (size) =>
  size >= 1 << 20 ? `${size / (1 << 20)} MiB` : size >= 1024 ? `${size / 1024} KiB` : `${size} B`
const lines = []
const push = (...l) => lines.push(...l)
push(
  '# Benchmarks',
  '',
  '`npm run bench` measures shmkit and what users would pick instead, side by side in one run, writes',
  '`bench/results/*.json`, and regenerates this page and the chart from them (`npm run bench -- --quick`',
  'is a smoke run). Each round runs every contender once, in a rotating order, so drift hits all of',
  'them alike; medians are reported (the JSON has min and max). The calls are written as users',
  'write them: `{ timeout }` on every call, the lock guard.',
  '',
  `All numbers on this page come from **one run on ${locks.date.slice(0, 10)}**, on ${machine}. Absolute rates`,
  'move from machine to machine (and from run to run on a VM); the ratios, measured in the same',
  'run, are what to compare.',
  '',
  '## The goals',
  '',
  '| measurement | ratio | goal | |',
  '| --- | --- | --- | --- |',
  ...goals.map(
    (g) =>
      `| ${g.what} | ${g.value === undefined ? '-' : g.target.endsWith('µs') ? `${g.value.toFixed(1)} µs` : x(g.value)} | ${g.target} | ${g.met ? 'met' : '**not met**'}: ${g.detail} |`,
  ),
  '',
  '## Locks',
  '',
  '`bench/locks.mjs`: lock + unlock in one thread; lock + increment + unlock under contention, with',
  "each contender's share of the acquisitions (a lock that starves one side can win throughput).",
  'The C anchor is compiled in the same run (`bench/contenders/pthread_lock.c`).',
  '',
  '| scenario | shmkit | alternative | ratio |',
  '| --- | --- | --- | --- |',
  `| uncontended | \`lock({ timeout })\` ${fmt(rate(u.shmkitTimeout))} | SAB futex mutex, one thread: ${fmt(rate(u.sab))} | ${x(rate(u.shmkitTimeout) / rate(u.sab))} |`,
  `| | \`lock()\` ${fmt(rate(u.shmkit))} | | ${x(rate(u.shmkit) / rate(u.sab))} |`,
)
if (locks.results.python?.uncontended)
  push(
    `| | | Python \`multiprocessing.Lock\`: ${fmt(locks.results.python.uncontended)} | ${x(rate(u.shmkitTimeout) / locks.results.python.uncontended)} |`,
  )
if (locks.results.properLockfile)
  push(
    `| | | \`proper-lockfile\`: ${fmt(locks.results.properLockfile.uncontended)} | ${(rate(u.shmkitTimeout) / locks.results.properLockfile.uncontended).toFixed(0)}x |`,
  )
for (const [n, r] of Object.entries(c)) {
  if (n === '1') {
    // The loop alone: what one process does with nobody to contend with, the bound of the rows below.
    push(
      `| alone | 1 process: ${fmt(rate(r.shmkit))} | SAB mutex, 1 worker thread: ${fmt(rate(r.sab))} | ${x(rate(r.shmkit) / rate(r.sab))} |`,
    )
    if (r.pthread)
      push(`| | | C pthread mutex, 1 process: ${fmt(rate(r.pthread))} | ${x(rate(r.shmkit) / rate(r.pthread))} |`)
    continue
  }
  push(
    `| ${n} contenders | ${n} processes: ${fmt(rate(r.shmkit))}, smallest share ${pct(r.shmkit.minShare)} | SAB mutex, ${n} worker threads: ${fmt(rate(r.sab))}, ${pct(r.sab.minShare)} | ${x(rate(r.shmkit) / rate(r.sab))} |`,
  )
  if (r.pthread)
    push(
      `| | | C pthread mutex, ${n} processes: ${fmt(rate(r.pthread))}, ${pct(r.pthread.minShare)} | ${x(rate(r.shmkit) / rate(r.pthread))} |`,
    )
}
if (locks.results.pthread?.skipped) push(`| | | C pthread mutex: skipped (${locks.results.pthread.skipped}) | |`)
if (locks.results.python?.contended)
  push(
    `| 2 contenders | | Python, 2 processes: ${fmt(locks.results.python.contended)} | ${x(rate(c[2].shmkit) / locks.results.python.contended)} |`,
  )
push(
  '',
  'The SAB mutex is two atomic operations and nothing more. A shmkit lock also writes the owner',
  'record that owner-death recovery reads, keeps the per-thread holder that makes a stale guard',
  'harmless and `EDEADLK` possible, and checks that the segment is still open: the difference in',
  'the uncontended rows ([LOCKING.md](LOCKING.md)).',
)
if (c[1])
  push(
    '',
    '"Alone" is the contended loop in one process with nobody to contend with. No contended rate can',
    'exceed it, so it bounds the ratios against the C mutex: a JavaScript lock + increment + unlock',
    "(the guard object, the owner record, V8's code for `Atomics`) costs more than C's.",
  )
push(
  '',
  '## Messages',
  '',
  '`bench/channels.mjs`: one producer process and one consumer process (the SharedArrayBuffer ring',
  'and MessagePort baselines can only connect threads of one process). Throughput is timed in the',
  'steady state: the first fifth of the messages of each run warms up the sender (a new process or',
  'thread) and is not counted, for every contender alike. Round trips with an awake peer.',
  '',
  '![Message throughput and round-trip latency against message size](benchmarks.svg)',
  '',
  '| size | contender | messages/s | MB/s | round trip p50 (p99) | shmkit is |',
  '| --- | --- | --- | --- | --- | --- |',
)
const labels = channels.results.contenders
for (const size of channels.results.sizes) {
  const th = channels.results.throughput[size]
  const rt = channels.results.roundTrip[size]
  const mine = rate(th.shmkit)
  for (const [key, label] of Object.entries(labels)) {
    if (!th[key]) continue
    const r = rate(th[key])
    push(
      `| ${key === 'shmkit' ? sizeLabel(size) : ''} | ${label} | ${fmt(r)} | ${((r * size) / 1e6).toFixed(size >= 65536 ? 0 : 1)} | ${rt[key].p50.median.toFixed(1)} µs (${rt[key].p99.median.toFixed(0)}) | ${key === 'shmkit' ? '' : x(mine / r)} |`,
    )
  }
}
const s = segments.results
push(
  '',
  '## Segments',
  '',
  '`bench/segments.mjs`: create + open + close + unlink of a 1 MiB segment, touching a page.',
  '',
  '| | time per cycle |',
  '| --- | --- |',
  `| shmkit (default: every page reserved, so a full /dev/shm is \`ENOSPC\` at create, not SIGBUS later) | ${s.shmkit.median.toFixed(0)} µs |`,
  `| shmkit with \`reserve: false\` | ${s.shmkitLazy.median.toFixed(0)} µs |`,
)
if (s.python?.median) push(`| Python \`multiprocessing.shared_memory\` | ${s.python.median.toFixed(0)} µs |`)
if (s.shmTypedArray?.median) push(`| \`shm-typed-array\` | ${s.shmTypedArray.median.toFixed(0)} µs |`)
if (maps) {
  const m = maps.results.contenders
  const cell = (r) => (r ? fmt(rate(r)) : '')
  push(
    '',
    '## Maps',
    '',
    `\`bench/maps.mjs\`: ${maps.results.keys.toLocaleString('en')} keys \`user:<n>\`, values small JSON objects (about 90 bytes),`,
    'read in one fixed pseudo-random order. lmdb-js runs with `noSync` (no fsync per commit: in',
    'memory and not durable, like shared memory). "First read" is a new handle reading every value',
    'once (each read decodes); a long-running reader mostly hits values it decoded before.',
    '',
    '| contender | get | get, first read | get, 2 processes | set | batched writes |',
    '| --- | --- | --- | --- | --- | --- |',
    ...Object.values(m).map(
      (r) =>
        `| ${r.label} | ${cell(r.get)}${r.getPipelined ? ` (pipelined x100: ${cell(r.getPipelined)})` : ''} | ${cell(r.getCold)} | ${cell(r.twoReaders)} | ${cell(r.set)} | ${r.setBatched ? `\`put\` x1000, awaited: ${cell(r.setBatched)}` : ''} |`,
    ),
  )
  for (const [key, why] of Object.entries(maps.results.skipped)) push('', `${key}: skipped (${why}).`)
}
if (topics) {
  const tp = topics.results.contenders
  const sizes = topics.results.sizes
  const cost = topics.results.publisherCost
  push(
    '',
    '## Topics',
    '',
    `\`bench/topics.mjs\`: one publisher, ${topics.results.subscribers} subscriber processes, every message to every subscriber;`,
    'deliveries per second (messages x subscribers). The socket publisher writes a length-prefixed frame',
    "to each subscriber's socket and waits for `drain` when one is full; `process.send` waits for its",
    'callback every 256 messages; Redis publishes are pipelined (awaited every 256).',
    '',
    `| contender | ${sizes.map(sizeLabel).join(' | ')} |`,
    `| --- | ${sizes.map(() => '---').join(' | ')} |`,
    ...Object.values(tp).map((r) => `| ${r.label} | ${sizes.map((size) => fmt(rate(r[size]))).join(' | ')} |`),
    '',
    `The publisher alone (64 B, overwrite mode, subscribers that do not read): ${[1, 4, 16].map((n) => `${n} subscriber(s) ${fmt(rate(cost[n]))}`).join(', ')}.`,
  )
  for (const [key, why] of Object.entries(topics.results.skipped)) push('', `${key}: skipped (${why}).`)
}
if (bridge) {
  push('', '## Across hosts: the JetStream bridge', '')
  if (bridge.results.skipped) push(`\`bench/bridge.mjs\`: skipped (${bridge.results.skipped}).`)
  else {
    const b = bridge.results.contenders
    push(
      `\`bench/bridge.mjs\`: ${bridge.results.count.toLocaleString('en')} messages of ${bridge.results.size} B from a producer to a consumer`,
      'through a local nats-server with JetStream (file storage), end to end. The bridge path is two',
      '`shmkit bridge` processes (export, import) between two local channels: what a two-host pipeline',
      'adds to a direct JetStream client. Plain JetStream publishes are awaited every 256 (as the',
      "bridge's) and a durable pull consumer acknowledges each message.",
      '',
      '| path | messages/s | vs plain JetStream |',
      '| --- | --- | --- |',
      ...Object.values(b).map((r) => `| ${r.label} | ${fmt(rate(r))} | ${x(rate(r) / rate(b.jetstream))} |`),
    )
  }
}
push('')
fs.writeFileSync(here('../docs/benchmarks.md'), lines.join('\n'))
console.log('\nwrote docs/benchmarks.md')
