//! The native part of the `citycard_reader` Python package: one function
//! that verifies and returns the `verify.v1` document as JSON text (the
//! Python side turns it into a dict).

use pyo3::prelude::*;

/// verify_json(request_json: str) -> str
///
/// `request_json`: a JSON object with `reader`, `trust`, `credential` and
/// optionally `root_fingerprint`, `attributes`, `stale`, `grace_secs`,
/// `always_send_certificate`, `wait_secs`. Returns the `verify.v1` document
/// (a verdict or an error) as JSON text. The GIL is released while waiting
/// for and verifying the card.
#[pyfunction]
fn verify_json(py: Python<'_>, request_json: &str) -> String {
    let request: Result<citycard_service::VerifyRequest, String> =
        serde_json::from_str(request_json).map_err(|e| e.to_string());
    let doc = py.detach(move || match request {
        Ok(r) => serde_json::to_value(citycard_service::verify_once(&r, false).json),
        Err(e) => serde_json::to_value(serde_json::json!({
            "schema_version": 1, "error": "usage", "message": format!("request: {e}"), "code": 2
        })),
    });
    doc.map(|d| d.to_string()).unwrap_or_else(|e| {
        serde_json::json!({"schema_version": 1, "error": "internal", "message": e.to_string(), "code": 1})
            .to_string()
    })
}

/// The package's version.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_json, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
