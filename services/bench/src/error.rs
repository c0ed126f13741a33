//! Errors of the load generator.
//!
//! Every failure a user can cause or meet (a broker that is not there, a missing topic, a
//! broker that speaks other versions) has its own variant with a message that names what
//! went wrong and where. Kafka error codes *inside* responses are not errors of the run:
//! they are counted and reported (see `stats`), and retried when retriable.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// Why a benchmark run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {address}: {reason}")]
    Connect {
        /// host:port tried.
        address: String,
        /// What the operating system said.
        reason: std::io::Error,
    },
    /// The TCP connection did not open in time.
    #[error("timed out connecting to {address} after {timeout:?}")]
    ConnectTimeout {
        /// host:port tried.
        address: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// Reading or writing an open connection failed; requests in flight have an unknown outcome.
    #[error("connection to {address} failed: {reason}")]
    Io {
        /// The broker's host:port.
        address: String,
        /// What the operating system said.
        reason: std::io::Error,
    },
    /// The broker closed the connection.
    #[error("{address} closed the connection")]
    Closed {
        /// The broker's host:port.
        address: String,
    },
    /// A response did not arrive in time.
    #[error("{address} did not answer {api:?} within {timeout:?}")]
    Timeout {
        /// The broker's host:port.
        address: String,
        /// The request's API.
        api: ApiKey,
        /// How long we waited.
        timeout: Duration,
    },
    /// A request could not be encoded (a bug or an impossible combination of settings).
    #[error("cannot encode {api:?} v{version} request: {reason}")]
    Encode {
        /// The request's API.
        api: ApiKey,
        /// The version used.
        version: i16,
        /// The codec's message.
        reason: String,
    },
    /// A response could not be decoded or does not belong to the request it answers.
    #[error("bad {api:?} response from {address}: {reason}")]
    BadResponse {
        /// The broker's host:port.
        address: String,
        /// The request's API.
        api: ApiKey,
        /// What was wrong.
        reason: String,
    },
    /// The broker does not offer a version of an API that this tool speaks.
    #[error("{address} does not support {api:?} versions {min}..={max}, which strata bench needs")]
    UnsupportedApi {
        /// The broker's host:port.
        address: String,
        /// The API.
        api: ApiKey,
        /// Lowest version we speak.
        min: i16,
        /// Highest version we speak.
        max: i16,
    },
    /// The topic does not exist (consumers never create topics).
    #[error("topic {topic} does not exist")]
    TopicMissing {
        /// The topic's name.
        topic: String,
    },
    /// The topic has no such partition.
    #[error("topic {topic} has no partition {partition}")]
    PartitionMissing {
        /// The topic's name.
        topic: String,
        /// The partition asked for.
        partition: i32,
    },
    /// The topic's partitions did not all get a leader in time.
    #[error("topic {topic} has no leader for some partitions after {waited:?}")]
    NoLeader {
        /// The topic's name.
        topic: String,
        /// How long we waited.
        waited: Duration,
    },
    /// A request failed with a Kafka error code the run cannot get past.
    #[error("{operation} for {what} failed: {} ({code})", error_name(*.code))]
    Kafka {
        /// The request, e.g. "CreateTopics".
        operation: &'static str,
        /// Topic or partition concerned.
        what: String,
        /// The Kafka error code.
        code: i16,
    },
    /// The options given do not make sense together.
    #[error("{0}")]
    InvalidArgs(String),
    /// The null broker could not bind its address.
    #[error("cannot listen on {address}: {reason}")]
    Bind {
        /// The address asked for.
        address: String,
        /// What the operating system said.
        reason: std::io::Error,
    },
    /// A record batch could not be encoded or decoded.
    #[error("record batch codec: {0}")]
    Records(String),
    /// Writing the report failed.
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// A worker task ended abnormally.
    #[error("a benchmark task failed: {0}")]
    Task(String),
}

/// The name Kafka gives an error code, e.g. "NotLeaderOrFollower"; "None" for 0.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "None".to_string(),
        Some(ResponseError::Unknown(code)) => format!("UnknownErrorCode{code}"),
        Some(error) => format!("{error:?}"),
    }
}

/// Whether Kafka marks this error code as retriable.
pub fn is_retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_kafka_names() {
        assert_eq!(error_name(6), "NotLeaderOrFollower");
        assert_eq!(error_name(0), "None");
        assert_eq!(error_name(9999), "UnknownErrorCode9999");
        assert!(is_retriable(6));
        assert!(!is_retriable(10));
        assert!(!is_retriable(0));
    }

    #[test]
    fn kafka_errors_read_well() {
        let error = BenchError::Kafka {
            operation: "CreateTopics",
            what: "topic t".into(),
            code: 37,
        };
        assert_eq!(
            error.to_string(),
            "CreateTopics for topic t failed: InvalidPartitions (37)"
        );
    }
}
