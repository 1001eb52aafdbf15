// Starts a private redis-server on a Unix socket in `dir` (no persistence) for a benchmark, and
// connects ioredis to it. Resolves with `{ skipped }` where redis-server is not installed.
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'

export async function startRedis(dir) {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (found.error) return { skipped: 'redis-server is not installed' }
  const socket = path.join(dir, 'redis.sock')
  const server = spawn(
    'redis-server',
    ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir],
    { stdio: 'ignore' },
  )
  for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 25))
  const { default: Redis } = await import('ioredis')
  const redis = new Redis({ path: socket })
  const stop = async () => {
    redis.disconnect()
    server.kill()
    await new Promise((resolve) => server.once('exit', resolve))
  }
  return { redis, socket, version: found.stdout.trim(), stop }
}
