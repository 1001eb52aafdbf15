//! Core errors become JS `Error`s whose `code` is the core's code (`EEXIST`, `ETIMEDOUT`, ...).

/// The `code` of a thrown error; napi-rs uses a status type's `AsRef<str>` as `err.code`.
pub struct Code(&'static str);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        self.0
    }
}

pub fn to_js(error: shmkit_core::Error) -> napi::Error<Code> {
    napi::Error::new(Code(error.code().as_str()), error.message().to_owned())
}

pub fn coded(code: &'static str, message: impl Into<String>) -> napi::Error<Code> {
    napi::Error::new(Code(code), message.into())
}
