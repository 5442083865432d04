//! Between Python and the library: errors to exceptions, records to dicts, option strings to
//! the library's typed options.

use mvdit_backend_wgpu::Precision;
use mvdit_core::dtype::Dtype;
use mvdit_train::backends::{BackendKind, BackendSpec};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

/// The library's one-line message as `FileNotFoundError` (a file or directory that is not
/// there), `ValueError` (a bad option: the message names its flag) or `mvdit.Error`.
pub fn err(e: mvdit_train::Error) -> PyErr {
    let msg = e.to_string();
    if msg.contains("(os error 2)") || msg.contains("No such file or directory") {
        PyFileNotFoundError::new_err(msg)
    } else if msg.starts_with("--") {
        PyValueError::new_err(msg)
    } else {
        crate::Error::new_err(msg)
    }
}

/// The backend named `backend` ("cpu", "wgpu", "vulkan") on `device` with `threads`.
pub fn spec(backend: &str, device: Option<usize>, threads: usize) -> PyResult<BackendSpec> {
    let kind: BackendKind = backend.parse().map_err(|e: mvdit_train::Error| PyValueError::new_err(format!("--backend: {e}")))?;
    Ok(BackendSpec { kind, threads, device, precision: Precision::F32, ..BackendSpec::default() })
}

/// "bf16", "f16" or "f32".
pub fn dtype(s: &str, flag: &str) -> PyResult<Dtype> {
    mvdit_core::parse_choice(s, &[("bf16", Dtype::Bf16), ("f16", Dtype::F16), ("f32", Dtype::F32)], "dtype").map_err(|e| PyValueError::new_err(format!("{flag}: {e}")))
}

/// A JSON value as Python objects (dict, list, str, int, float, bool, None).
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.into_pyobject(py)?.into_any(),
            (None, Some(u)) => u.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(s) => s.into_pyobject(py)?.into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let d = PyDict::new(py);
            for (k, item) in map {
                d.set_item(k, json_to_py(py, item)?)?;
            }
            d.into_any()
        }
    })
}
