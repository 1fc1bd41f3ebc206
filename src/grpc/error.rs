//! The one table from status codes to gRPC codes, and TF Serving's message truncation.

use tonic::Status;

use crate::core::{Code, ServingError};

/// Messages longer than this are cut, as TF Serving's `grpc_status_util` does.
pub const MAX_STATUS_MESSAGE_CHARS: usize = 1024;

/// Maps a TF status code to the gRPC code with the same number.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::Ok => tonic::Code::Ok,
        Code::Cancelled => tonic::Code::Cancelled,
        Code::Unknown => tonic::Code::Unknown,
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DataLoss => tonic::Code::DataLoss,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
    }
}

/// Cuts a message to 1024 characters plus `...TRUNCATED`.
pub fn truncate_message(message: &str) -> String {
    match message.char_indices().nth(MAX_STATUS_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...TRUNCATED", &message[..cut]),
        None => message.to_string(),
    }
}

/// Returns the gRPC status for an error.
pub fn to_status(error: ServingError) -> Status {
    Status::new(grpc_code(error.code), truncate_message(&error.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_numbers() {
        for code in [Code::NotFound, Code::InvalidArgument, Code::Unavailable, Code::Unauthenticated, Code::Cancelled] {
            assert_eq!(grpc_code(code) as i32, code as i32);
        }
    }

    #[test]
    fn long_messages_are_truncated() {
        let long = "é".repeat(2000);
        let cut = truncate_message(&long);
        assert!(cut.ends_with("...TRUNCATED"));
        assert_eq!(cut.chars().count(), MAX_STATUS_MESSAGE_CHARS + "...TRUNCATED".len());
        assert_eq!(truncate_message("short"), "short");
        let status = to_status(ServingError::not_found("Servable not found for request: Latest(x)"));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "Servable not found for request: Latest(x)");
    }
}
