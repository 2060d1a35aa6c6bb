//! The client–daemon protocol: one JSON object per line over the Unix socket.
//!
//! The client sends one [`RequestLine`]; the daemon answers with one [`ReplyLine`], or for
//! `logs --follow` with [`Reply::LogChunk`] lines ended by [`Reply::LogEnd`]. Every line
//! carries [`VERSION`]; a side that gets another version refuses it by name instead of
//! misreading fields that may have changed meaning.

use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::{Name, RunSpec, Usage};
use crate::state::Record;

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The longest line either side reads (a log chunk, a list of many containers).
pub const MAX_LINE: u64 = 16 << 20;

/// What the client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start a container.
    Run(RunSpec),
    /// Every container.
    List,
    /// One container.
    Info {
        /// Its id, id prefix or name.
        target: String,
    },
    /// Usage of the named containers (all running ones when empty).
    Stats {
        /// Ids, id prefixes or names.
        targets: Vec<String>,
    },
    /// A container's output.
    Logs {
        /// Its id, id prefix or name.
        target: String,
        /// Keep sending new output until the container ends.
        follow: bool,
    },
    /// SIGTERM to every process, SIGKILL after the timeout.
    Stop {
        /// Its id, id prefix or name.
        target: String,
        /// Seconds between SIGTERM and SIGKILL.
        timeout_secs: u64,
    },
    /// Wait until the container ends.
    Wait {
        /// Its id, id prefix or name.
        target: String,
    },
    /// Send a signal.
    Kill {
        /// Its id, id prefix or name.
        target: String,
        /// The signal's number.
        signal: i32,
    },
    /// Forget a stopped container: its record, logs and writable layer.
    Remove {
        /// Its id, id prefix or name.
        target: String,
        /// Stop it first when it runs.
        force: bool,
    },
    /// The images.
    Images,
    /// Import an image.
    ImportImage {
        /// The image's name.
        name: Name,
        /// Where it comes from.
        source: ImageSource,
    },
    /// Remove an image no container uses.
    RemoveImage {
        /// The image's name.
        name: Name,
    },
}

/// What an image is imported from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// A directory or a (gzipped) tarball on the daemon's machine, by absolute path.
    Path(std::path::PathBuf),
    /// A root filesystem made of the host's static busybox.
    Busybox,
}

/// A container and, when it runs, its current usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerView {
    /// What the daemon records.
    #[serde(flatten)]
    pub record: Record,
    /// Live usage of a running container; `None` once it stopped (see `final_usage`).
    pub usage: Option<Usage>,
    /// When the usage was read, in microseconds since the epoch.
    pub sampled_at_usec: u64,
}

/// An image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageView {
    /// Its name.
    pub name: Name,
    /// Where it was imported from.
    pub source: String,
    /// When, in seconds since the epoch.
    pub created: u64,
    /// The size of its files in bytes.
    pub size: u64,
}

/// Why a request failed; it decides the client's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request names something that does not exist or is malformed (exit 2).
    BadInput,
    /// The request is fine but the current state forbids it (exit 1).
    Conflict,
    /// The peer is not root (exit 1).
    Permission,
    /// The system failed to do it (exit 1).
    Runtime,
    /// The line could not be understood (exit 1).
    Protocol,
}

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// What went wrong, for a person.
    pub message: String,
}

impl Failure {
    /// A failure of this kind.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// Bad input.
    pub fn bad_input(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::BadInput, message)
    }

    /// The system failed.
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Runtime, message)
    }

    /// The state forbids it.
    pub fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(FailureKind::Conflict, message)
    }
}

/// What the daemon answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// A container started.
    Started {
        /// Its id.
        id: String,
    },
    /// Containers, for `list`, `info` and `stats`.
    Containers {
        /// The containers.
        containers: Vec<ContainerView>,
    },
    /// A piece of a container's output.
    LogChunk {
        /// The bytes.
        data: Vec<u8>,
    },
    /// No more output will come.
    LogEnd,
    /// A container is stopped (or was already).
    Stopped {
        /// Its record after the stop.
        container: Box<ContainerView>,
    },
    /// Done, nothing to tell.
    Done,
    /// The images.
    Images {
        /// The images.
        images: Vec<ImageView>,
    },
    /// The request failed.
    Failed(Failure),
}

/// A request on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLine {
    /// [`VERSION`].
    pub version: u32,
    /// The request.
    pub request: Request,
}

/// A reply on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyLine {
    /// [`VERSION`].
    pub version: u32,
    /// The reply.
    #[serde(flatten)]
    pub reply: Reply,
}

/// Only the version, read before the rest so that a line of another version is refused
/// for its version and not for a field it happens to lack.
#[derive(Deserialize)]
struct VersionProbe {
    version: u32,
}

/// Why a line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection before a whole line.
    #[error("the connection closed before a reply arrived")]
    Closed,
    /// The line is longer than [`MAX_LINE`].
    #[error("a message longer than {MAX_LINE} bytes")]
    TooLong,
    /// The line is not what the protocol allows.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The peer speaks another version.
    #[error("protocol version {theirs} is not supported (this qube speaks version {VERSION}); use a qube client and daemon of the same release")]
    Version {
        /// The peer's version.
        theirs: u32,
    },
}

/// Writes one message as a line and flushes it.
pub fn write_line<T: Serialize>(out: &mut impl Write, message: &T) -> Result<(), WireError> {
    let mut line = serde_json::to_vec(message).map_err(|e| WireError::Malformed(e.to_string()))?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}

/// Reads one message line, refusing other versions.
pub fn read_line<T: DeserializeOwned>(input: &mut impl BufRead) -> Result<T, WireError> {
    let mut line = Vec::new();
    let mut limited = std::io::Read::take(&mut *input, MAX_LINE + 1);
    let n = limited.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(WireError::Closed);
    }
    if n as u64 > MAX_LINE {
        return Err(WireError::TooLong);
    }
    decode(&line)
}

/// Decodes one line: the version first, then the message.
pub fn decode<T: DeserializeOwned>(line: &[u8]) -> Result<T, WireError> {
    let probe: VersionProbe =
        serde_json::from_slice(line).map_err(|e| WireError::Malformed(e.to_string()))?;
    if probe.version != VERSION {
        return Err(WireError::Version {
            theirs: probe.version,
        });
    }
    serde_json::from_slice(line).map_err(|e| WireError::Malformed(e.to_string()))
}

impl RequestLine {
    /// A request of this version.
    pub fn new(request: Request) -> RequestLine {
        RequestLine {
            version: VERSION,
            request,
        }
    }
}

impl ReplyLine {
    /// A reply of this version.
    pub fn new(reply: Reply) -> ReplyLine {
        ReplyLine {
            version: VERSION,
            reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnvVar, LimitRequest, RestartPolicy, Volume};
    use qube_cgroup::{Bytes, Max};

    fn run_spec() -> RunSpec {
        RunSpec {
            name: Some("web".parse().unwrap()),
            image: "alpine".parse().unwrap(),
            command: "sleep 60".into(),
            env: vec!["K=V".parse::<EnvVar>().unwrap()],
            volumes: vec!["/host:/ctr:ro".parse::<Volume>().unwrap()],
            isolated: true,
            restart: RestartPolicy::OnFailure,
            limits: LimitRequest {
                memory: Some(Max::Limit(Bytes::mib(512))),
                swap: Some(Max::Limit(Bytes::mib(256))),
                cpus: Some(crate::model::CpuMax::cpus(1.5)),
                pids: Some(Max::Limit(256)),
            },
        }
    }

    fn round_trip<T: Serialize + DeserializeOwned>(message: &T) -> T {
        let mut wire = Vec::new();
        write_line(&mut wire, message).unwrap();
        assert_eq!(wire.iter().filter(|&&b| b == b'\n').count(), 1);
        read_line(&mut wire.as_slice()).unwrap()
    }

    #[test]
    fn every_request_round_trips() {
        let requests = [
            Request::Run(run_spec()),
            Request::List,
            Request::Info {
                target: "web".into(),
            },
            Request::Stats { targets: vec![] },
            Request::Logs {
                target: "web".into(),
                follow: true,
            },
            Request::Stop {
                target: "web".into(),
                timeout_secs: 10,
            },
            Request::Kill {
                target: "web".into(),
                signal: 9,
            },
            Request::Wait {
                target: "web".into(),
            },
            Request::Remove {
                target: "web".into(),
                force: true,
            },
            Request::Images,
            Request::ImportImage {
                name: "alpine".parse().unwrap(),
                source: ImageSource::Busybox,
            },
            Request::RemoveImage {
                name: "alpine".parse().unwrap(),
            },
        ];
        for request in requests {
            let line = RequestLine::new(request);
            assert_eq!(round_trip(&line), line);
        }
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Started { id: "abc".into() },
            Reply::LogChunk {
                data: vec![0, 159, 146, 150, b'\n'],
            },
            Reply::LogEnd,
            Reply::Done,
            Reply::Failed(Failure::bad_input("unknown image")),
        ] {
            let line = ReplyLine::new(reply);
            assert_eq!(round_trip(&line), line);
        }
    }

    #[test]
    fn other_versions_are_refused_by_version() {
        let line = br#"{"version":2,"request":{"op":"teleport"}}"#;
        let err = decode::<RequestLine>(line).unwrap_err();
        assert!(matches!(err, WireError::Version { theirs: 2 }), "{err}");
        assert!(err.to_string().contains("version 2 is not supported"));
    }

    #[test]
    fn malformed_limits_are_refused_on_the_wire() {
        let line = br#"{"version":1,"request":{"op":"run","name":null,"image":"alpine","command":"x","env":[],"volumes":[],"isolated":false,"restart":"no","limits":{"memory":"2gb?"}}}"#;
        assert!(matches!(
            decode::<RequestLine>(line),
            Err(WireError::Malformed(_))
        ));
        let bad_name = br#"{"version":1,"request":{"op":"info","target":"x"},"extra":1}"#;
        assert!(decode::<RequestLine>(bad_name).is_ok());
    }

    #[test]
    fn an_unterminated_huge_line_is_refused() {
        let mut big = vec![b' '; (MAX_LINE + 10) as usize];
        big.push(b'\n');
        assert!(matches!(
            read_line::<RequestLine>(&mut big.as_slice()),
            Err(WireError::TooLong)
        ));
    }
}
