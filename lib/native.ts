// The native addon, loaded once per thread: the loader napi-rs generates picks this platform's
// binary; when there is none, the error says which platform and what to do. Also the binary
// contract (layout offsets, magics, limits, codec ids, error codes), read once from the Rust
// core where each is defined.

import { coded } from './errors'
import type * as Binding from '../binding'

export const { NativeSegment, WaitToken, currentThreadIdentity, threadLiveness, contract, sharedArrayBuffers } =
  loadBinding()
export type NativeSegment = Binding.NativeSegment
export type WaitToken = Binding.WaitToken
export type NativeCreateOptions = Binding.NativeCreateOptions
export type NativeOpenOptions = Binding.NativeOpenOptions
export type NativeInspection = Binding.SegmentInspection
export type NativeMutexReport = Binding.MutexReport

/** The binary contract of the Rust core (docs/LAYOUT.md, docs/LOCKING.md, docs/CHANNELS.md). */
export const CONTRACT: Binding.Contract = contract()

/** The platform as the binary packages name it, e.g. `linux-x64-gnu`, `darwin-arm64`. */
function platformName(): string {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`
  let glibc: string | undefined
  try {
    glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
      ?.glibcVersionRuntime
  } catch {
    return `linux-${process.arch}` // the runtime refused to say (Deno without --allow-sys)
  }
  return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`
}

/** The `--allow-*` flag a Deno permission error in `error`'s cause chain names, if any. */
function refusedPermission(error: unknown): string | undefined {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== 'undefined' || 'deno' in process.versions
  if (!isDeno) return undefined
  for (let e = error as { name?: string; message?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    const flag = /--allow-[a-z]+/.exec(String(e.message))?.[0]
    if (flag) return flag
    if (e.name === 'NotCapable') return 'a permission'
  }
  return undefined
}

/** Loads the native addon for this platform, or explains clearly why there is none. */
function loadBinding(): typeof Binding {
  try {
    return require('../binding') as typeof Binding
  } catch (error) {
    const refused = refusedPermission(error)
    if (refused) {
      throw coded(
        new Error(
          `Deno refused ${refused} that shmkit needs to load its native addon. Run with ` +
            '--allow-read --allow-env --allow-ffi ' +
            '(or -A); see the platforms page of the shmkit docs.',
          { cause: error },
        ),
        'ERR_SHM_NO_BINARY',
      )
    }
    const platform = platformName()
    throw coded(
      new Error(
        `shmkit has no native binary for ${platform} (Node ${process.version}). Prebuilt binaries ship as ` +
          `optional dependencies (the package shmkit-${platform}) for linux-x64/arm64 (gnu and musl), ` +
          'darwin-x64/arm64 and win32-x64/arm64: reinstall without --no-optional/--omit=optional, and make ' +
          'sure the lockfile was not created on another platform. On other platforms, build from source ' +
          'with a Rust toolchain (npm run build in a clone).',
        { cause: error },
      ),
      'ERR_SHM_NO_BINARY',
    )
  }
}
