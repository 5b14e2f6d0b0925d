//! citycard's C ABI: verify a card and get the `verify.v1` JSON document
//! (`schemas/verify.v1.json`), for partners' systems in C, and through it
//! Java (JNA), C# (P/Invoke), Go (cgo) and others.
//!
//! # Ownership
//!
//! - Every `const char *` argument is borrowed for the duration of the
//!   call: a NUL-terminated UTF-8 string the caller owns (may be freed
//!   right after the call).
//! - Every `char *` returned is owned by the caller and must be released
//!   with [`citycard_string_free`], exactly once, and with nothing else
//!   (not `free`). The functions never return NULL.
//! - [`citycard_version`] returns a static string: never free it.
//!
//! The functions are thread-safe and never unwind into C: a panic inside
//! becomes an `internal` error document.

use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use citycard_reader::json::{ErrorJson, VerifyJson};
use citycard_service::{verify_once, VerifyRequest};

/// Borrows a C string as UTF-8.
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, ErrorJson> {
    if p.is_null() {
        return Err(ErrorJson::new("usage", format!("{what} is NULL"), 2));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| ErrorJson::new("usage", format!("{what} is not UTF-8"), 2))
}

/// A JSON document as an owned C string (JSON never contains NUL: it
/// escapes control characters).
fn owned(json: &VerifyJson) -> *mut c_char {
    let text = serde_json::to_string(json).unwrap_or_else(|_| {
        r#"{"schema_version":1,"error":"internal","message":"JSON encoding failed","code":1}"#
            .to_owned()
    });
    CString::new(text)
        .unwrap_or_else(|_| CString::from(c"{\"schema_version\":1,\"error\":\"internal\",\"message\":\"NUL in JSON\",\"code\":1}"))
        .into_raw()
}

/// Verifies the card on `reader` and returns the `verify.v1` JSON document:
/// a verdict (`"verdict"`, `"code"` 0 only for a genuine card, the disclosed
/// attributes, the pseudonym) or an error (`"error"`, `"message"`, `"code"`
/// 1, 2 or 3).
///
/// - `reader`: a PC/SC reader name (or a unique part of it), or
///   `emulated:FILE` for the built-in emulated card whose state is in FILE.
/// - `trust_path`, `credential_path`: the city's trust bundle and this
///   partner's credential.
/// - `options_json`: NULL, or a JSON object with any of
///   `root_fingerprint` (64 hex digits), `attributes` (array of names),
///   `stale` (`"reject"` or `"accept"`), `grace_secs`,
///   `always_send_certificate`, `wait_secs` (default 30).
///
/// Blocks until a card is there (up to `wait_secs`) and verified. The
/// result is owned by the caller: release it with [`citycard_string_free`].
///
/// # Safety
///
/// Each argument is NULL (an error document follows, except for
/// `options_json` where NULL means no options) or a NUL-terminated string
/// valid for the duration of the call.
#[no_mangle]
pub unsafe extern "C" fn citycard_verify(
    reader: *const c_char,
    trust_path: *const c_char,
    credential_path: *const c_char,
    options_json: *const c_char,
) -> *mut c_char {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the caller's contract, passed on.
        let request = unsafe { request(reader, trust_path, credential_path, options_json) };
        match request {
            Ok(r) => verify_once(&r, false).json,
            Err(e) => VerifyJson::Error(e),
        }
    }));
    owned(&result.unwrap_or_else(|_| {
        VerifyJson::Error(ErrorJson::new("internal", "the verification panicked", 1))
    }))
}

/// Builds the request from the C arguments.
///
/// # Safety
///
/// As [`citycard_verify`].
unsafe fn request(
    reader: *const c_char,
    trust: *const c_char,
    credential: *const c_char,
    options: *const c_char,
) -> Result<VerifyRequest, ErrorJson> {
    // SAFETY: the caller's contract.
    let (reader, trust, credential) = unsafe {
        (
            text(reader, "reader")?,
            text(trust, "trust_path")?,
            text(credential, "credential_path")?,
        )
    };
    let mut fields = serde_json::Map::new();
    if !options.is_null() {
        // SAFETY: the caller's contract.
        let o = unsafe { text(options, "options_json")? };
        match serde_json::from_str::<serde_json::Value>(o) {
            Ok(serde_json::Value::Object(m)) => fields = m,
            _ => {
                return Err(ErrorJson::new(
                    "usage",
                    "options_json is not a JSON object",
                    2,
                ))
            }
        }
    }
    for key in ["reader", "trust", "credential"] {
        if fields.contains_key(key) {
            return Err(ErrorJson::new(
                "usage",
                format!("options_json may not set {key:?}"),
                2,
            ));
        }
    }
    fields.insert("reader".into(), reader.into());
    fields.insert("trust".into(), trust.into());
    fields.insert("credential".into(), credential.into());
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| ErrorJson::new("usage", format!("options_json: {e}"), 2))
}

/// Releases a string returned by this library. NULL is accepted (no-op).
///
/// # Safety
///
/// `s` is NULL or a pointer returned by [`citycard_verify`] not yet released.
#[no_mangle]
pub unsafe extern "C" fn citycard_string_free(s: *mut c_char) {
    if !s.is_null() {
        // SAFETY: `s` came from CString::into_raw in this library, released once.
        drop(unsafe { CString::from_raw(s) });
    }
}

/// This library's version, e.g. `0.1.0`: a static string, never free it.
#[no_mangle]
pub extern "C" fn citycard_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}
