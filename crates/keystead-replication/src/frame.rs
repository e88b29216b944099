//! The node transport's wire format. On a mutually authenticated TLS stream between two nodes
//! of a region, the client writes one request frame and reads one answer frame, then may write
//! the next; a stream never has two requests in flight.
//!
//! A frame is a 4-byte big-endian length, then that many bytes. A request's first byte says
//! what it asks for ([`Kind`]) and the rest is its JSON body; an answer is JSON. JSON because
//! the log's entries (`types::Proposal`) are an untagged enum, which only a self-describing
//! format can decode; the sealed values inside are base64 either way.
//!
//! Why not one HTTPS request per message, as before: at one client the URL parsing, header
//! maps and connection-pool bookkeeping of an HTTP client and server were about a sixth of the
//! leader's CPU per write (`docs/benchmarks.md`).

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame either side accepts. A snapshot chunk (openraft's default 3 MiB, its
/// bytes JSON-encoded as numbers) is the largest message; anything far beyond is not a peer.
pub const MAX_FRAME: usize = 64 << 20;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    /// openraft's append-entries (and heartbeat).
    Append = 1,
    Vote = 2,
    /// One chunk of a snapshot being installed.
    Snapshot = 3,
    /// A write forwarded by a follower to the leader.
    Propose = 4,
    /// A follower asking the leader for a read index.
    ReadIndex = 5,
}

impl Kind {
    fn from_byte(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Append,
            2 => Kind::Vote,
            3 => Kind::Snapshot,
            4 => Kind::Propose,
            5 => Kind::ReadIndex,
            _ => return None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("empty request frame or unknown request kind")]
    UnknownKind,
    #[error("encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A whole request frame, ready to write.
pub fn encode_request<B: Serialize + ?Sized>(kind: Kind, body: &B) -> Result<Vec<u8>, FrameError> {
    encode(Some(kind), body)
}

/// A whole answer frame, ready to write.
pub fn encode_answer<T: Serialize + ?Sized>(answer: &T) -> Result<Vec<u8>, FrameError> {
    encode(None, answer)
}

/// Serializes straight after a placeholder length, which is then filled in: one buffer, no
/// copy of the body.
fn encode<T: Serialize + ?Sized>(kind: Option<Kind>, value: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = Vec::with_capacity(512);
    frame.extend_from_slice(&[0; 4]);
    if let Some(kind) = kind {
        frame.push(kind as u8);
    }
    serde_json::to_writer(&mut frame, value)?;
    let length = frame.len() - 4;
    if length > MAX_FRAME {
        return Err(FrameError::TooLarge(length));
    }
    // Fits: MAX_FRAME is far below u32::MAX.
    frame[..4].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(frame)
}

/// Writes a frame made by [`encode_request`] or [`encode_answer`] and flushes it.
pub async fn write<S: AsyncWrite + Unpin>(stream: &mut S, frame: &[u8]) -> Result<(), FrameError> {
    stream.write_all(frame).await?;
    stream.flush().await?;
    Ok(())
}

/// Reads one frame's contents. An end of stream before the length is an `UnexpectedEof` I/O
/// error, as is one inside a frame.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, FrameError> {
    let mut length = [0; 4];
    stream.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(FrameError::TooLarge(length));
    }
    let mut contents = vec![0; length];
    stream.read_exact(&mut contents).await?;
    Ok(contents)
}

/// Splits a request frame's contents into its kind and JSON body.
pub fn split_request(contents: &[u8]) -> Result<(Kind, &[u8]), FrameError> {
    let (&kind, body) = contents.split_first().ok_or(FrameError::UnknownKind)?;
    Ok((Kind::from_byte(kind).ok_or(FrameError::UnknownKind)?, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_and_an_answer_round_trip() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let request = encode_request(Kind::Vote, &serde_json::json!({"term": 3})).expect("encode");
        write(&mut client, &request).await.expect("write");
        let contents = read(&mut server).await.expect("read");
        let (kind, body) = split_request(&contents).expect("split");
        assert_eq!(kind, Kind::Vote);
        assert_eq!(body, br#"{"term":3}"#);

        let answer = encode_answer(&vec![1u8, 2]).expect("encode");
        write(&mut server, &answer).await.expect("write");
        assert_eq!(read(&mut client).await.expect("read"), b"[1,2]");
    }

    #[tokio::test]
    async fn oversized_lengths_unknown_kinds_and_truncation_are_errors() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client
            .write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .expect("write");
        assert!(matches!(
            read(&mut server).await,
            Err(FrameError::TooLarge(_))
        ));

        assert!(matches!(
            split_request(&[9, b'{', b'}']),
            Err(FrameError::UnknownKind)
        ));
        assert!(matches!(split_request(&[]), Err(FrameError::UnknownKind)));

        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(&[0, 0, 0, 10, 1, 2]).await.expect("write");
        drop(client);
        assert!(matches!(read(&mut server).await, Err(FrameError::Io(_))));
    }
}
