//! The NGSI-LD error types (ETSI GS CIM 009, clause 5.5.2 and table 6.3.2-1) and the
//! problem-details body (`{type, title, detail}`, IETF RFC 7807) an answer carries.

use serde_json::{Value, json};
use thiserror::Error;

/// An NGSI-LD error type: its URI, its HTTP status and a short title.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// The request itself is malformed (a parameter that cannot be read, a body that is
    /// not JSON). HTTP 400.
    InvalidRequest,
    /// The request reads but its content is wrong (a bad query term, a bad geometry).
    /// HTTP 400.
    BadRequestData,
    /// The resource exists already (a subscription id given twice). HTTP 409.
    AlreadyExists,
    /// The operation or the option is not supported here. HTTP 422.
    OperationNotSupported,
    /// The entity, type or subscription does not exist. HTTP 404.
    ResourceNotFound,
    /// Something failed on the server's side. HTTP 500.
    InternalError,
    /// The query goes beyond the limits this implementation sets (terms, depth, length).
    /// HTTP 403.
    TooComplexQuery,
    /// The query would produce more results than allowed (a `limit` above the maximum).
    /// HTTP 403.
    TooManyResults,
    /// A JSON-LD `@context` the request refers to cannot be used: this server fetches
    /// nothing and knows only the core context and its own. HTTP 503.
    LdContextNotAvailable,
    /// The addressed tenant does not exist. HTTP 404.
    NonexistentTenant,
}

impl ErrorType {
    /// The type's URI, `https://uri.etsi.org/ngsi-ld/errors/<name>`.
    pub fn uri(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            ErrorType::BadRequestData => "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            ErrorType::AlreadyExists => "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            ErrorType::OperationNotSupported => {
                "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported"
            }
            ErrorType::ResourceNotFound => "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            ErrorType::InternalError => "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            ErrorType::TooComplexQuery => "https://uri.etsi.org/ngsi-ld/errors/TooComplexQuery",
            ErrorType::TooManyResults => "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            ErrorType::LdContextNotAvailable => {
                "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable"
            }
            ErrorType::NonexistentTenant => "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
        }
    }

    /// The HTTP status of an answer carrying this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorType::InvalidRequest | ErrorType::BadRequestData => 400,
            ErrorType::AlreadyExists => 409,
            ErrorType::OperationNotSupported => 422,
            ErrorType::ResourceNotFound | ErrorType::NonexistentTenant => 404,
            ErrorType::InternalError => 500,
            ErrorType::TooComplexQuery | ErrorType::TooManyResults => 403,
            ErrorType::LdContextNotAvailable => 503,
        }
    }

    /// A short title summarising the error.
    pub fn title(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "Invalid request",
            ErrorType::BadRequestData => "Bad request data",
            ErrorType::AlreadyExists => "Already exists",
            ErrorType::OperationNotSupported => "Operation not supported",
            ErrorType::ResourceNotFound => "Resource not found",
            ErrorType::InternalError => "Internal error",
            ErrorType::TooComplexQuery => "Too complex query",
            ErrorType::TooManyResults => "Too many results",
            ErrorType::LdContextNotAvailable => "JSON-LD context not available",
            ErrorType::NonexistentTenant => "Nonexistent tenant",
        }
    }
}

/// An error to answer with: its type and a detail naming what was wrong and where (the
/// parameter or the member of the body).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{}: {detail}", error_type.title())]
pub struct NgsiError {
    pub error_type: ErrorType,
    pub detail: String,
}

impl NgsiError {
    pub fn new(error_type: ErrorType, detail: impl Into<String>) -> NgsiError {
        NgsiError {
            error_type,
            detail: detail.into(),
        }
    }

    /// `BadRequestData` about the parameter or member `name`.
    pub fn bad_data(name: &str, reason: impl std::fmt::Display) -> NgsiError {
        NgsiError::new(ErrorType::BadRequestData, format!("{name}: {reason}"))
    }

    /// `InvalidRequest` about the parameter or member `name`.
    pub fn invalid(name: &str, reason: impl std::fmt::Display) -> NgsiError {
        NgsiError::new(ErrorType::InvalidRequest, format!("{name}: {reason}"))
    }

    /// `OperationNotSupported` about the parameter or member `name`.
    pub fn unsupported(name: &str, reason: impl std::fmt::Display) -> NgsiError {
        NgsiError::new(
            ErrorType::OperationNotSupported,
            format!("{name}: {reason}"),
        )
    }

    /// `TooComplexQuery` about the parameter or member `name`.
    pub fn too_complex(name: &str, reason: impl std::fmt::Display) -> NgsiError {
        NgsiError::new(ErrorType::TooComplexQuery, format!("{name}: {reason}"))
    }

    /// `ResourceNotFound` for the resource `what`.
    pub fn not_found(what: impl std::fmt::Display) -> NgsiError {
        NgsiError::new(ErrorType::ResourceNotFound, format!("{what} not found"))
    }

    pub fn status(&self) -> u16 {
        self.error_type.status()
    }

    /// The problem-details body: `{"type": <uri>, "title": …, "detail": …}`.
    pub fn problem_json(&self) -> Value {
        json!({
            "type": self.error_type.uri(),
            "title": self.error_type.title(),
            "detail": self.detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_body_names_the_type_and_the_parameter() {
        let e = NgsiError::bad_data("limit", "not a number");
        assert_eq!(e.status(), 400);
        assert_eq!(
            e.problem_json(),
            json!({
                "type": "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
                "title": "Bad request data",
                "detail": "limit: not a number",
            })
        );
    }
}
