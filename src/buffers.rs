//! Zero-copy ArrayBuffers (and SharedArrayBuffers, where the runtime can make them) over a
//! mapping.
//!
//! napi-rs's safe constructor silently COPIES the bytes when the runtime forbids external
//! buffers (Electron's V8 sandbox). For shared memory a copy is a silent bug, so this module calls
//! Node-API directly and turns that refusal into a clear error.

use std::ffi::c_void;
use std::sync::{Arc, OnceLock};

use napi::sys;

use crate::errors::{coded, Code};

/// Wraps a raw `napi_value` so a `#[napi]` function can return it.
pub struct RawValue(pub sys::napi_value);

impl napi::bindgen_prelude::ToNapiValue for RawValue {
    unsafe fn to_napi_value(_env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
        Ok(value.0)
    }
}

impl napi::bindgen_prelude::TypeName for RawValue {
    fn type_name() -> &'static str {
        "ArrayBuffer"
    }
    fn value_type() -> napi::ValueType {
        napi::ValueType::Object
    }
}

/// Creates an ArrayBuffer over `len` bytes at `data`, keeping `owner` alive until the engine
/// collects the buffer (the finalizer drops it), so the memory is never unmapped under a view.
///
/// # Safety
/// `data..data+len` must stay valid for as long as `owner` is alive, and no other ArrayBuffer may
/// be created over the same address range while this one exists.
pub unsafe fn external<T: Send + Sync + 'static>(
    env: sys::napi_env,
    data: *mut u8,
    len: usize,
    owner: Arc<T>,
) -> napi::Result<RawValue, Code> {
    unsafe extern "C" fn release<T>(
        _env: sys::napi_env,
        _data: *mut std::ffi::c_void,
        hint: *mut std::ffi::c_void,
    ) {
        // SAFETY: `hint` is the Box<Arc<T>> leaked below, handed back exactly once by the engine.
        drop(unsafe { Box::from_raw(hint as *mut Arc<T>) });
    }
    let hint = Box::into_raw(Box::new(owner));
    let mut value = std::ptr::null_mut();
    // SAFETY: `data`/`len` are valid per the caller's contract; `release::<T>` matches the hint's
    // type; `value` is a valid out-pointer.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env,
            data.cast(),
            len,
            Some(release::<T>),
            hint.cast(),
            &mut value,
        )
    };
    if status == sys::Status::napi_ok {
        return Ok(RawValue(value));
    }
    // SAFETY: the engine did not take the hint, so we still own the box.
    drop(unsafe { Box::from_raw(hint) });
    if status == sys::Status::napi_no_external_buffers_allowed {
        return Err(coded(
            "ERR_SHM_EXTERNAL_BUFFERS_FORBIDDEN",
            "This JavaScript runtime forbids external ArrayBuffers (for example Electron with the V8 \
             memory cage): shmkit cannot expose shared memory without copying it, and a copy would \
             silently stop being shared. Use shmkit from a Node.js process instead",
        ));
    }
    Err(coded(
        "ERR_SHM_NAPI",
        format!("napi_create_external_arraybuffer failed with status {status}"),
    ))
}

/// `node_api_create_external_sharedarraybuffer`: experimental Node-API (Node 22.? and later), so
/// not in the headers this addon is built against, nor in Node 20, Bun or Deno. Looked up in the
/// running process instead, once.
type CreateExternalSharedArrayBuffer = unsafe extern "C" fn(
    env: sys::napi_env,
    data: *mut c_void,
    len: usize,
    finalize: Option<unsafe extern "C" fn(data: *mut c_void, hint: *mut c_void)>,
    hint: *mut c_void,
    result: *mut sys::napi_value,
) -> sys::napi_status;

fn create_external_sharedarraybuffer() -> Option<CreateExternalSharedArrayBuffer> {
    static FOUND: OnceLock<Option<CreateExternalSharedArrayBuffer>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        if std::env::var_os("SHMKIT_NO_SHAREDARRAYBUFFER").is_some() {
            return None;
        }
        #[cfg(unix)]
        {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the loaded
            // objects' symbol tables.
            let symbol = unsafe {
                libc::dlsym(
                    libc::RTLD_DEFAULT,
                    c"node_api_create_external_sharedarraybuffer".as_ptr(),
                )
            };
            if symbol.is_null() {
                return None;
            }
            // SAFETY: the symbol, where the runtime exports it, is the function declared in
            // js_native_api.h with exactly this C signature (checked against Node 22, 24, 26).
            Some(unsafe {
                std::mem::transmute::<*mut c_void, CreateExternalSharedArrayBuffer>(symbol)
            })
        }
        #[cfg(not(unix))]
        {
            None
        }
    })
}

/// Whether `shared` below makes real SharedArrayBuffers in this process.
pub fn sharedarraybuffers() -> bool {
    create_external_sharedarraybuffer().is_some()
}

/// Creates a SharedArrayBuffer over `len` bytes at `data` where the runtime can (see
/// `sharedarraybuffers`), else an ArrayBuffer as `external` does. `owner` stays alive until the
/// engine frees the buffer's memory, which for a SharedArrayBuffer posted to workers is when the
/// last of them collected it, on whichever thread that is: hence `Send + Sync`.
///
/// # Safety
/// As for `external`.
pub unsafe fn shared<T: Send + Sync + 'static>(
    env: sys::napi_env,
    data: *mut u8,
    len: usize,
    owner: Arc<T>,
) -> napi::Result<RawValue, Code> {
    let Some(create) = create_external_sharedarraybuffer() else {
        // SAFETY: the caller's contract is `external`'s.
        return unsafe { external(env, data, len, owner) };
    };
    unsafe extern "C" fn release<T>(_data: *mut c_void, hint: *mut c_void) {
        // SAFETY: `hint` is the Box<Arc<T>> leaked below, handed back exactly once by the engine
        // (from any thread: Arc<T> with T: Send + Sync may be dropped there).
        drop(unsafe { Box::from_raw(hint as *mut Arc<T>) });
    }
    let hint = Box::into_raw(Box::new(owner));
    let mut value = std::ptr::null_mut();
    // SAFETY: `data`/`len` are valid per the caller's contract; `release::<T>` matches the hint's
    // type; `value` is a valid out-pointer; `create` has the declared signature.
    let status = unsafe {
        create(
            env,
            data.cast(),
            len,
            Some(release::<T>),
            hint.cast(),
            &mut value,
        )
    };
    if status == sys::Status::napi_ok {
        return Ok(RawValue(value));
    }
    // SAFETY: the engine did not take the hint, so we still own the box.
    let owner = *unsafe { Box::from_raw(hint) };
    // A runtime that exports the function but refuses (external buffers forbidden): the
    // ArrayBuffer path reports that clearly, or works.
    // SAFETY: the caller's contract is `external`'s.
    unsafe { external(env, data, len, owner) }
}

/// Detaches `buffer` if it is an ArrayBuffer whose bytes start at `data`; other values are left
/// alone. After this, views over it have length 0 instead of touching unmapped memory.
///
/// # Safety
/// `env` and `buffer` must be valid handles of the current call.
pub unsafe fn detach_if_over(
    env: sys::napi_env,
    buffer: sys::napi_value,
    data: *mut u8,
) -> napi::Result<(), Code> {
    let mut is_arraybuffer = false;
    // SAFETY: valid env and value (caller's contract), valid out-pointer.
    unsafe { sys::napi_is_arraybuffer(env, buffer, &mut is_arraybuffer) };
    if !is_arraybuffer {
        return Ok(());
    }
    let mut start = std::ptr::null_mut();
    let mut len = 0usize;
    // SAFETY: `buffer` is an ArrayBuffer (checked above); out-pointers are valid.
    unsafe { sys::napi_get_arraybuffer_info(env, buffer, &mut start, &mut len) };
    if start.cast::<u8>() != data {
        return Ok(());
    }
    // SAFETY: an external ArrayBuffer created by `external`, hence detachable.
    let status = unsafe { sys::napi_detach_arraybuffer(env, buffer) };
    if status != sys::Status::napi_ok {
        return Err(coded(
            "ERR_SHM_NAPI",
            format!("napi_detach_arraybuffer failed with status {status}"),
        ));
    }
    Ok(())
}
