//! The transport-neutral error: a TensorFlow status code plus the message clients see.

use std::fmt;

/// Says that `value` is not one of the `known` names of a setting, listing them: "unknown
/// resize mode `fit` (known: stretch, letterbox, center_crop)".
pub fn unknown_choice(what: &str, value: &str, known: &[&str]) -> String {
    format!("unknown {what} `{value}` (known: {})", known.join(", "))
}

/// TensorFlow's `tensorflow.error.Code`, which uses the same numbers as gRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Returns the enum name as TF Serving prints it in status JSON and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// An error with the status code and message that a client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServingError {
    pub code: Code,
    pub message: String,
}

impl ServingError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NotFound, message)
    }
    /// True for a failure that may pass by itself (a resource that was busy or unreachable),
    /// so a load that failed with it is worth retrying. Everything else is permanent: a
    /// model file that does not parse stays broken however often it is read.
    pub fn is_transient(&self) -> bool {
        matches!(self.code, Code::Unavailable | Code::Aborted | Code::ResourceExhausted | Code::DeadlineExceeded)
    }
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FailedPrecondition, message)
    }
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::Unimplemented, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Internal, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::Unavailable, message)
    }
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DeadlineExceeded, message)
    }
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(Code::Cancelled, message)
    }
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(Code::Unknown, message)
    }

    /// Returns TF's `Status::ToString()` form, `CODE_NAME: message`, used when errors are wrapped.
    pub fn to_status_string(&self) -> String {
        format!("{}: {}", self.code.name(), self.message)
    }
}

impl fmt::Display for ServingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServingError {}

/// Lets code that only reads the error (request accounting) take any wrapper of it.
impl AsRef<ServingError> for ServingError {
    fn as_ref(&self) -> &ServingError {
        self
    }
}

pub type ServingResult<T> = Result<T, ServingError>;
