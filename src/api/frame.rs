//! The framing of an upgraded exec or attach stream (`Upgrade: flotilla-stream`), shared by the
//! server ([`super::server`]) and the client ([`super::client`]). After `101 Switching
//! Protocols` both directions are a sequence of frames, each an 8-byte header and a payload:
//!
//! ```text
//! byte 0     kind: 0 stdin, 1 stdout, 2 stderr, 3 exit, 4 resize, 5 close stdin, 6 error
//! bytes 1-3  zero
//! bytes 4-7  payload length, u32 big-endian (at most MAX_PAYLOAD)
//! ```
//!
//! Payloads: stdin/stdout/stderr raw bytes; exit an i32 big-endian (the process's status, last
//! frame the daemon sends); resize two u16 big-endian, rows then columns; close stdin nothing
//! (end of input: the process's stdin is closed, the client still reads); error a UTF-8 message
//! (the daemon failed mid-stream; an exit frame follows). With a pseudo-terminal (`tty`) the
//! terminal's output arrives as stdout frames, in the same framing, so resizes and the exit
//! code stay in-band. The client sends stdin, resize and close stdin; the daemon the others.
//! A client keeps its sending side open until the exit frame: a connection that ends (or is
//! half-closed) before it means the client went away, and the daemon then kills the exec'd
//! process and what it started (attach: detaches, the container runs on).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The `Upgrade` protocol name of the stream.
pub const PROTOCOL: &str = "flotilla-stream";

/// The largest payload of one frame.
pub const MAX_PAYLOAD: usize = 1 << 20;

const HEADER: usize = 8;

/// One frame of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Bytes),
    Stdout(Bytes),
    Stderr(Bytes),
    Exit(i32),
    Resize { rows: u16, cols: u16 },
    CloseStdin,
    Error(String),
}

/// A malformed frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("stream frame of unknown kind {0}")]
    Kind(u8),
    #[error("stream frame of {len} bytes is larger than the limit of {MAX_PAYLOAD}")]
    TooLarge { len: usize },
    #[error("stream frame of kind {kind} has a payload of {len} bytes")]
    Length { kind: u8, len: usize },
}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Stdin(_) => 0,
            Frame::Stdout(_) => 1,
            Frame::Stderr(_) => 2,
            Frame::Exit(_) => 3,
            Frame::Resize { .. } => 4,
            Frame::CloseStdin => 5,
            Frame::Error(_) => 6,
        }
    }

    /// The frame's bytes: header and payload. Data longer than [`MAX_PAYLOAD`] must be split
    /// by the caller ([`write_data`] does).
    pub fn encode(&self) -> Vec<u8> {
        let mut payload = BytesMut::new();
        match self {
            Frame::Stdin(b) | Frame::Stdout(b) | Frame::Stderr(b) => payload.put_slice(b),
            Frame::Exit(code) => payload.put_i32(*code),
            Frame::Resize { rows, cols } => {
                payload.put_u16(*rows);
                payload.put_u16(*cols);
            }
            Frame::CloseStdin => {}
            Frame::Error(m) => payload.put_slice(m.as_bytes()),
        }
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.extend_from_slice(&[self.kind(), 0, 0, 0]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    /// Takes one whole frame off the front of `buf`; none while it is incomplete.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let kind = buf[0];
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if kind > 6 {
            return Err(FrameError::Kind(kind));
        }
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge { len });
        }
        let want = match kind {
            3 => Some(4),
            4 => Some(4),
            5 => Some(0),
            _ => None,
        };
        if want.is_some_and(|w| w != len) {
            return Err(FrameError::Length { kind, len });
        }
        if buf.len() < HEADER + len {
            return Ok(None);
        }
        buf.advance(HEADER);
        let mut payload = buf.split_to(len).freeze();
        Ok(Some(match kind {
            0 => Frame::Stdin(payload),
            1 => Frame::Stdout(payload),
            2 => Frame::Stderr(payload),
            3 => Frame::Exit(payload.get_i32()),
            4 => {
                let rows = payload.get_u16();
                Frame::Resize {
                    rows,
                    cols: payload.get_u16(),
                }
            }
            5 => Frame::CloseStdin,
            _ => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
        }))
    }
}

/// Reads the next frame from `r` (buffering in `buf`); none at a clean end of the stream.
pub async fn read<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<Option<Frame>> {
    loop {
        if let Some(f) = Frame::decode(buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?
        {
            return Ok(Some(f));
        }
        buf.reserve(16 << 10);
        if r.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the stream ended inside a frame",
                ))
            };
        }
    }
}

/// Writes one frame and flushes.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    w.write_all(&frame.encode()).await?;
    w.flush().await
}

/// Writes `data` as frames of `make` (split at [`MAX_PAYLOAD`]) and flushes.
pub async fn write_data<W: AsyncWrite + Unpin>(
    w: &mut W,
    data: &[u8],
    make: fn(Bytes) -> Frame,
) -> std::io::Result<()> {
    for chunk in data.chunks(MAX_PAYLOAD) {
        w.write_all(&make(Bytes::copy_from_slice(chunk)).encode())
            .await?;
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = [
            Frame::Stdin(Bytes::from_static(b"in")),
            Frame::Stdout(Bytes::from_static(b"out\n")),
            Frame::Stderr(Bytes::new()),
            Frame::Exit(-3),
            Frame::Resize {
                rows: 40,
                cols: 132,
            },
            Frame::CloseStdin,
            Frame::Error("boom".into()),
        ];
        let mut buf = BytesMut::new();
        for f in &frames {
            buf.extend_from_slice(&f.encode());
        }
        // A partial frame waits for the rest.
        let mut part = BytesMut::from(&buf[..5]);
        assert_eq!(Frame::decode(&mut part), Ok(None));
        for f in &frames {
            assert_eq!(Frame::decode(&mut buf).unwrap().as_ref(), Some(f));
        }
        assert!(buf.is_empty());
        assert_eq!(
            Frame::Exit(127).encode(),
            [3, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 127]
        );
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut b = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, 0][..]);
        assert_eq!(Frame::decode(&mut b), Err(FrameError::Kind(9)));
        let mut b = BytesMut::from(&[1u8, 0, 0, 0, 0xff, 0, 0, 0][..]);
        assert!(matches!(
            Frame::decode(&mut b),
            Err(FrameError::TooLarge { .. })
        ));
        let mut b = BytesMut::from(&[3u8, 0, 0, 0, 0, 0, 0, 2, 0, 0][..]);
        assert_eq!(
            Frame::decode(&mut b),
            Err(FrameError::Length { kind: 3, len: 2 })
        );
    }
}
