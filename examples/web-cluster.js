// A cluster HTTP server whose workers share one SharedMap: a session cache (entries with a TTL),
// a per-client rate limiter (an exact counter across workers), and a configuration every worker
// reloads the moment it changes (watch). The primary drives it with real requests and checks.
//
//   node examples/web-cluster.js [workers]
//
// Everything below uses only the public API, as an application would.
'use strict'

const cluster = require('node:cluster')
const http = require('node:http')
const { randomUUID } = require('node:crypto')
const { SharedMap } = require('shmkit')

const LIMIT = 10 // requests per client per window
const WINDOW_MS = 60_000

if (cluster.isPrimary) {
  primary(Number(process.argv[2] ?? 2)).catch((error) => {
    console.error(error)
    process.exit(1)
  })
} else worker(process.env.SHARED_MAP)

async function primary(workers) {
  const name = `web-cluster-demo-${process.pid}`
  // autoUnlink: the map goes away when the last process holding it exits, even after a crash.
  const shared = SharedMap.create(name, { capacity: 10_000, evict: 'lru', autoUnlink: true })
  shared.set('config', { greeting: 'hello' })

  // Every worker listens on one port: Node's cluster shares the primary's socket, Bun's workers
  // each bind it with SO_REUSEPORT (so it must be a real port, not 0 per worker).
  const port = Number(process.env.PORT) || (await freePort())
  const listening = []
  for (let i = 0; i < workers; i++) {
    const child = cluster.fork({ SHARED_MAP: name, PORT: String(port) })
    listening.push(new Promise((resolve) => child.once('listening', resolve)))
  }
  await Promise.all(listening)
  // One connection per request (no keep-alive), so the cluster spreads them over the workers.
  const get = (path, client = 'demo') =>
    new Promise((resolve, reject) => {
      const options = { port, path, agent: false, headers: { 'x-client': client } }
      http
        .get(options, (response) => {
          let text = ''
          response.on('data', (chunk) => (text += chunk))
          response.on('end', () => resolve({ status: response.statusCode, body: JSON.parse(text) }))
        })
        .on('error', reject)
    })

  // A session created by one worker is seen by every worker.
  const login = await get('/login?user=ada')
  const servedBy = new Set()
  for (let i = 0; i < 6; i++) {
    const me = await get(`/me?session=${login.body.session}`, 'reader')
    if (me.body.user !== 'ada') throw new Error(`worker ${me.body.worker} did not find the session`)
    servedBy.add(me.body.worker)
  }
  console.log(`session made by worker ${login.body.worker}, read by workers ${[...servedBy].join(', ')}`)

  // The rate limit holds across workers: exactly LIMIT requests pass, whoever serves them.
  const statuses = await Promise.all(Array.from({ length: 25 }, () => get('/hello', 'greedy')))
  const passed = statuses.filter((r) => r.status === 200).length
  console.log(`rate limiter: ${passed} of 25 requests passed (limit ${LIMIT}), the rest got 429`)
  if (passed !== LIMIT) throw new Error(`expected exactly ${LIMIT} to pass`)

  // A configuration change reaches every worker through watch(), without a restart.
  shared.set('config', { greeting: 'bonjour' })
  const deadline = Date.now() + 5000
  const seen = new Map()
  while (seen.size < workers || [...seen.values()].some((g) => g !== 'bonjour')) {
    if (Date.now() > deadline) throw new Error(`workers still greet with ${[...seen.values()]}`)
    const { body } = await get('/hello', `client-${seen.size}-${Date.now()}`)
    seen.set(body.worker, body.greeting)
  }
  console.log(`config reloaded by ${seen.size} workers: they now say "${[...seen.values()][0]}"`)
  console.log('map:', shared.stats())

  // Stop the workers, then close: the last process to close an autoUnlink map removes it (the
  // killed workers' slots are reaped on the way).
  await Promise.all(
    Object.values(cluster.workers).map((child) => new Promise((resolve) => child.once('exit', resolve).kill())),
  )
  shared.close()
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = http.createServer().listen(0, () => {
      const { port } = probe.address()
      probe.close(() => resolve(port))
    })
    probe.on('error', reject)
  })
}

function worker(name) {
  const shared = SharedMap.open(name)
  let config = shared.get('config')
  // Reload the configuration whenever any process changes it (ends when the map is closed).
  ;(async () => {
    for await (const change of shared.watch('config')) config = change.value
  })()

  const send = (response, status, body) => {
    response.writeHead(status, { 'content-type': 'application/json' })
    response.end(JSON.stringify({ ...body, worker: process.pid }))
  }

  http
    .createServer((request, response) => {
      const url = new URL(request.url, 'http://localhost')
      const client = request.headers['x-client'] ?? request.socket.remoteAddress
      // Rate limiting: one counter per client and window, exact across every worker.
      const window = Math.floor(Date.now() / WINDOW_MS)
      const count = shared.increment(`rate:${client}:${window}`, 1, { ttl: WINDOW_MS })
      if (count > LIMIT) return send(response, 429, { error: 'too many requests' })

      if (url.pathname === '/login') {
        const session = randomUUID()
        shared.set(`session:${session}`, { user: url.searchParams.get('user') }, { ttl: 30 * 60_000 })
        return send(response, 200, { session })
      }
      if (url.pathname === '/me') {
        const session = shared.get(`session:${url.searchParams.get('session')}`)
        return session ? send(response, 200, { user: session.user }) : send(response, 401, { error: 'no session' })
      }
      return send(response, 200, { greeting: config.greeting })
    })
    .listen(Number(process.env.PORT))
}
