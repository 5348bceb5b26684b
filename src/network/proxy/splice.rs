//! The TCP relay of a published port without copies through user space: each direction moves
//! bytes socket → pipe → socket with splice(2), driven by tokio's readiness (a would-block
//! splice clears it). End of stream on one side becomes a write shutdown on the other
//! (half-close) while the other direction goes on; an error in either direction closes both.

use std::io;
use std::os::fd::OwnedFd;

use rustix::pipe::{PipeFlags, SpliceFlags};
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A non-blocking pipe used as the splice buffer of one direction.
pub(super) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl Pipe {
    /// A pipe of (up to) `size` bytes; a smaller size when the kernel allows no more.
    pub(super) fn new(size: usize) -> io::Result<Pipe> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let _ = rustix::pipe::fcntl_setpipe_size(&write, size);
        let size = rustix::pipe::fcntl_getpipe_size(&write)?;
        Ok(Pipe { read, write, size })
    }
}

const FLAGS: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Relays between `client` and `upstream` until both directions have ended.
pub(super) async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    pipes: (Pipe, Pipe),
) -> io::Result<()> {
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::try_join!(
        one_way(client_read, upstream_write, pipes.0),
        one_way(upstream_read, client_write, pipes.1),
    )?;
    Ok(())
}

async fn one_way(from: OwnedReadHalf, mut to: OwnedWriteHalf, pipe: Pipe) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        let src: &TcpStream = from.as_ref();
        let n = src
            .async_io(Interest::READABLE, || {
                rustix::pipe::splice(src, None, &pipe.write, None, pipe.size, FLAGS)
                    .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(total);
        }
        let mut pending = n;
        while pending > 0 {
            let dst: &TcpStream = to.as_ref();
            let m = dst
                .async_io(Interest::WRITABLE, || {
                    rustix::pipe::splice(&pipe.read, None, dst, None, pending, FLAGS)
                        .map_err(io::Error::from)
                })
                .await?;
            if m == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "splice wrote nothing",
                ));
            }
            pending -= m;
        }
        total += n as u64;
    }
}
