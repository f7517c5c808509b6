//! The CLI's side: one request, one answer, with errors an operator can act on.

use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use crate::proto::{Envelope, Reply, Request, Response, MAX_REPLY, PROTOCOL_VERSION};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("voxgate is not running (no daemon answers on {0})")]
    NotRunning(String),
    /// The socket exists but this user may not use it.
    #[error("permission denied on {0}: run as root or as a member of the socket's group")]
    PermissionDenied(String),
    /// The daemon did not answer in time.
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    /// The daemon answered with an error.
    #[error("{error}")]
    Daemon {
        /// One-line error.
        error: String,
        /// Further lines.
        details: Vec<String>,
    },
    /// Anything else on the socket.
    #[error("control socket {0}: {1}")]
    Io(String, io::Error),
    /// The answer could not be read.
    #[error("unreadable answer from the daemon: {0}")]
    Protocol(String),
}

/// Sends `request` to the daemon at `socket` and waits up to `timeout` for its reply.
pub async fn request(
    socket: &Path,
    request: Request,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    tokio::time::timeout(timeout, exchange(socket, request))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// Connects, sends `request`, and returns the reading half (with the socket's name for errors).
/// The writing half is returned too: dropping it would half-close the connection.
async fn open(
    socket: &Path,
    request: Request,
) -> Result<(String, BufReader<OwnedReadHalf>, OwnedWriteHalf), ClientError> {
    let name = socket.display().to_string();
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning(name.clone())
            }
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied(name.clone()),
            _ => ClientError::Io(name.clone(), e),
        })?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(&Envelope {
        v: PROTOCOL_VERSION,
        request,
    })
    .map_err(|e| ClientError::Protocol(e.to_string()))?;
    line.push(b'\n');
    wr.write_all(&line)
        .await
        .map_err(|e| ClientError::Io(name.clone(), e))?;
    Ok((name, BufReader::new(rd), wr))
}

async fn exchange(socket: &Path, request: Request) -> Result<Reply, ClientError> {
    let (name, mut rd, _wr) = open(socket, request).await?;
    let mut answer = Vec::new();
    (&mut rd)
        .take(MAX_REPLY as u64)
        .read_until(b'\n', &mut answer)
        .await
        .map_err(|e| ClientError::Io(name.clone(), e))?;
    if answer.is_empty() {
        return Err(ClientError::Protocol(
            "the daemon closed the connection".into(),
        ));
    }
    let resp: Response = serde_json::from_slice(&answer).map_err(|e| {
        let v = serde_json::from_slice::<serde_json::Value>(&answer).ok();
        match v.and_then(|v| v.get("v").and_then(|v| v.as_u64())) {
            Some(n) if n != u64::from(PROTOCOL_VERSION) => ClientError::Protocol(format!(
                "the daemon speaks protocol {n}, this CLI {PROTOCOL_VERSION}: use the CLI of the daemon's version"
            )),
            _ => ClientError::Protocol(e.to_string()),
        }
    })?;
    match (resp.ok, resp.result) {
        (true, Some(result)) => Ok(result),
        (true, None) => Err(ClientError::Protocol("success without a result".into())),
        (false, _) => Err(ClientError::Daemon {
            error: resp.error.unwrap_or_else(|| "unspecified error".into()),
            details: resp.details,
        }),
    }
}

/// Sends a streaming `request` and calls `each` with every reply until the daemon ends the
/// stream or `each` returns false.
pub async fn stream(
    socket: &Path,
    request: Request,
    mut each: impl FnMut(Reply) -> bool,
) -> Result<(), ClientError> {
    let (name, mut rd, _wr) = open(socket, request).await?;
    loop {
        let mut answer = Vec::new();
        let n = (&mut rd)
            .take(MAX_REPLY as u64)
            .read_until(b'\n', &mut answer)
            .await
            .map_err(|e| ClientError::Io(name.clone(), e))?;
        if n == 0 {
            return Ok(());
        }
        let resp: Response =
            serde_json::from_slice(&answer).map_err(|e| ClientError::Protocol(e.to_string()))?;
        match (resp.ok, resp.result) {
            (true, Some(r)) => {
                if !each(r) {
                    return Ok(());
                }
            }
            (true, None) => return Err(ClientError::Protocol("success without a result".into())),
            (false, _) => {
                return Err(ClientError::Daemon {
                    error: resp.error.unwrap_or_else(|| "unspecified error".into()),
                    details: resp.details,
                })
            }
        }
    }
}
