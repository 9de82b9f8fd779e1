//! SDK failures as [`Error`]s: the tier, the operation, the key and the server's answer, with an
//! [`std::io::ErrorKind`] that tells a transient failure from a refusal (see the module doc of
//! [`super`]).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use super::S3Store;
use crate::Error;

impl S3Store {
    pub(super) fn describe(&self, key: &str) -> String {
        format!(
            "tier {}: s3://{}/{}",
            self.name,
            self.bucket,
            self.full_key(key)
        )
    }

    pub(super) fn range_error(&self, key: &str, offset: u64, len: u64, size: u64) -> Error {
        Error::io(
            format!("tier {}: GET {key} bytes {offset}+{len}", self.name),
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the object has only {size} bytes"),
            ),
        )
    }

    pub(super) fn protocol_error(&self, op: &str, key: &str, what: &str) -> Error {
        Error::io(
            format!("tier {}: {op} {key}", self.name),
            std::io::Error::other(what.to_owned()),
        )
    }

    /// Turns an SDK error into an [`Error`] with context; see the module doc for the mapping.
    pub(crate) fn sdk_error<E>(&self, op: &str, key: &str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let context = format!("tier {}: {op} {key}", self.name);
        if matches!(&err, SdkError::ServiceError(_))
            && (err.code() == Some("NoSuchKey") || err.code() == Some("NotFound"))
        {
            return Error::NotFound {
                tier: self.name.clone(),
                key: key.to_owned(),
            };
        }
        Error::io(context, sdk_io_error(err))
    }
}

/// The std::io::Error (kind + message) that describes an SDK failure. The kind decides whether
/// [`Error::is_transient`] considers it worth retrying later.
pub(crate) fn sdk_io_error<E>(err: SdkError<E, HttpResponse>) -> std::io::Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use std::io::ErrorKind;
    let status = http_status(&err);
    let kind = match &err {
        SdkError::TimeoutError(_) => ErrorKind::TimedOut,
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) if c.is_timeout() => ErrorKind::TimedOut,
            Some(c) => io_kind_in_chain(c).unwrap_or(ErrorKind::ConnectionReset),
            None => ErrorKind::ConnectionReset,
        },
        // 5xx: the server could not serve the request now (Garage without quorum says 503).
        // Reported as a reset connection so that callers retry later; the message says what
        // really happened.
        _ if status.is_some_and(|s| s >= 500) => ErrorKind::ConnectionReset,
        _ if status == Some(403) => ErrorKind::PermissionDenied,
        SdkError::ResponseError(_) => ErrorKind::InvalidData,
        _ => ErrorKind::Other,
    };
    let message = match (err.code(), err.message(), status) {
        (Some(code), Some(msg), Some(s)) => format!("HTTP {s} {code}: {msg}"),
        (Some(code), None, Some(s)) => format!("HTTP {s} {code}"),
        (None, _, Some(s)) if s >= 300 => format!("HTTP {s}"),
        // No error code: a transport failure, or a response the SDK could not parse.
        (_, _, Some(s)) => format!("HTTP {s}: {}", error_chain(&err)),
        _ => error_chain(&err),
    };
    std::io::Error::new(kind, message)
}

/// The HTTP status of a failed request, if a response arrived.
pub(crate) fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// The kind of the first std::io::Error in an error's source chain (connection refused, …).
fn io_kind_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                k @ (std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::TimedOut) => k,
                // Broken pipes, aborted connections, unreachable hosts: transport trouble.
                _ => std::io::ErrorKind::ConnectionReset,
            });
        }
        cur = e.source();
    }
    None
}

/// "outer: inner: innermost", since the SDK's own Display often says only "dispatch failure".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}
