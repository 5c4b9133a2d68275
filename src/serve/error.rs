//! The one error type of the HTTP API. Every refusal leaves as JSON with the status that
//! says whose fault it is: 400 for a filter the user wrote, 404 for a session or code block
//! that is not there, 401/403 for the guard, 503 while the database cannot be read. A 500
//! means a bug in wrapper, never something a request contained.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::store::query::QueryError;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable machine-readable word: `bad_filter`, `unknown_session`, ...
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// A query parameter or path segment the API cannot use.
    pub fn bad_filter(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_filter", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let message = e.to_string();
        match e {
            QueryError::UnknownSession(_) => ApiError::not_found("unknown_session", message),
            QueryError::UnknownDigest(_) => ApiError::not_found("unknown_code_block", message),
            QueryError::AmbiguousSession { .. } | QueryError::AmbiguousDigest { .. } => {
                ApiError::new(StatusCode::BAD_REQUEST, "ambiguous", message)
            }
            QueryError::BadDigest(_) | QueryError::BadSearch { .. } => {
                ApiError::bad_filter(message)
            }
            QueryError::Sqlite(e) => sqlite(e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::unavailable(e.to_string())
    }
}

/// A database that is busy, gone or broken is the server's state, not the request's fault.
fn sqlite(e: rusqlite::Error) -> ApiError {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(
            C::DatabaseBusy
            | C::DatabaseLocked
            | C::CannotOpen
            | C::SystemIoFailure
            | C::DatabaseCorrupt
            | C::NotADatabase
            | C::ReadOnly,
        ) => ApiError::unavailable(format!("database: {e}")),
        _ => ApiError::internal(format!("database: {e}")),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, "{}", self.message);
        }
        let body = Body {
            error: Inner {
                status: self.status.as_u16(),
                code: self.code,
                message: &self.message,
            },
        };
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wrapper\""),
            );
        }
        r
    }
}
