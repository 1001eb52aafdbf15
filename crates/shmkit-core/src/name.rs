//! Segment names: one portable rule for every OS, and the OS object name derived from it.
//!
//! A name is 1 to [`MAX_NAME_LEN`] bytes of `A-Z a-z 0-9 . _ -`. The rule is the intersection of
//! what POSIX `shm_open` and Windows kernel-object names accept, so a name that works on one
//! platform works on all, and no name can contain a `/` or `\` that would leave the shm namespace.
//! Every OS object carries the `shmkit.` prefix, so shmkit never touches objects it did not make.

use crate::error::{Error, ErrorCode, Result};

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// Prefix of every OS object shmkit creates.
pub const OS_PREFIX: &str = "shmkit.";

/// Checks `name` against the portable rule.
pub fn validate(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidName,
            "The segment name is empty: use 1 to 200 characters from A-Z a-z 0-9 . _ -",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::new(
            ErrorCode::NameTooLong,
            format!(
                "The segment name is {} bytes long; the limit is {MAX_NAME_LEN}",
                name.len()
            ),
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::new(
            ErrorCode::InvalidName,
            format!(
                "The segment name {name:?} contains {bad:?}; use only A-Z a-z 0-9 . _ - (no slashes)"
            ),
        ));
    }
    Ok(())
}

/// The name of the OS object behind segment `name` (after [`validate`]).
pub fn os_id(name: &str) -> String {
    crate::platform::shm_object_name(name)
}

/// FNV-1a, 64 bits: small, stable across versions and platforms.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_portable_names() {
        for name in ["a", "jobs", "my-app.v2_counter", &"x".repeat(MAX_NAME_LEN)] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(validate("").unwrap_err().code(), ErrorCode::InvalidName);
        assert_eq!(
            validate(&"x".repeat(MAX_NAME_LEN + 1)).unwrap_err().code(),
            ErrorCode::NameTooLong
        );
        for name in ["a/b", "../etc", "a b", "é", "a\\b", "a\0b", "a:b"] {
            assert_eq!(
                validate(name).unwrap_err().code(),
                ErrorCode::InvalidName,
                "{name:?}"
            );
        }
    }
}
