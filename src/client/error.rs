//! What can stop a client command, and the exit code each one means to a script.
use crate::api::{ErrorBody, ErrorCode};
use std::process::ExitCode;

/// Why a command stopped. Each variant is one exit code, so scripts can tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Exit 1: a job failed or was cancelled, the server refused a request for good, or a
    /// digest did not match.
    #[error("{0}")]
    Failed(String),
    /// Exit 2: a bad argument, a missing key, a file that cannot be read.
    #[error("{0}")]
    Usage(String),
    /// Exit 3: the server refused the key (401) or the caller's rights (403; not an
    /// admission hook's refusal of the job, which is exit 1).
    #[error("{0}")]
    AuthRefused(String),
    /// Exit 4: no answer (or only transient failures) after every retry.
    #[error("{0}")]
    Unreachable(String),
}

impl ClientError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Failed(_) => 1,
            ClientError::Usage(_) => 2,
            ClientError::AuthRefused(_) => 3,
            ClientError::Unreachable(_) => 4,
        }
    }

    /// The error a refusal stands for: its status and the server's own message.
    pub fn from_answer(status: u16, body: &[u8]) -> Self {
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        let code = parsed.as_ref().map(|body| body.error.code);
        let message = parsed
            .map(|body| body.error.message)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        let message = format!("the server answered {status}: {}", one_line(&message));
        match status {
            403 if code == Some(ErrorCode::AdmissionRefused) => ClientError::Failed(message),
            401 | 403 => ClientError::AuthRefused(message),
            408 | 429 | 500.. => ClientError::Unreachable(message),
            _ => ClientError::Failed(message),
        }
    }
}

/// The exit code of a run where several jobs may have ended differently: a usage error first
/// (nothing could be tried properly), then a refused key, an unreachable server, a failed job.
pub fn combined_exit(errors: &[ClientError]) -> ExitCode {
    [2, 3, 4, 1]
        .into_iter()
        .find(|code| errors.iter().any(|error| error.exit_code() == *code))
        .map_or(ExitCode::SUCCESS, ExitCode::from)
}

/// Text from elsewhere (a server's message, an error chain) as one bounded line.
pub fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    line.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_the_exit_codes_scripts_rely_on() {
        let body = br#"{"error":{"code":"unauthorized","message":"wrong token"}}"#;
        let refused = ClientError::from_answer(401, body);
        assert_eq!(refused.exit_code(), 3);
        assert!(refused.to_string().contains("wrong token"), "{refused}");
        assert_eq!(ClientError::from_answer(403, b"").exit_code(), 3);
        let refused_job =
            br#"{"error": {"code": "admission_refused", "message": "no .exe files"}}"#;
        assert_eq!(ClientError::from_answer(403, refused_job).exit_code(), 1);
        assert_eq!(ClientError::from_answer(404, b"not json").exit_code(), 1);
        assert_eq!(ClientError::from_answer(503, b"").exit_code(), 4);
        assert_eq!(ClientError::from_answer(429, b"").exit_code(), 4);
    }

    #[test]
    fn the_most_telling_exit_code_wins() {
        let failed = || ClientError::Failed(String::new());
        let unreachable = || ClientError::Unreachable(String::new());
        assert_eq!(combined_exit(&[]), ExitCode::SUCCESS);
        assert_eq!(combined_exit(&[failed(), unreachable()]), ExitCode::from(4));
        assert_eq!(
            combined_exit(&[failed(), ClientError::AuthRefused(String::new())]),
            ExitCode::from(3)
        );
        assert_eq!(combined_exit(&[failed()]), ExitCode::from(1));
    }

    #[test]
    fn messages_from_elsewhere_become_one_bounded_line() {
        let line = one_line(&format!("a\nb\r\x1b[31m{}", "x".repeat(1000)));
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(line.chars().count() <= 300);
    }
}
