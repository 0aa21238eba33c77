//! Connections: the cap on how many are open at once, and lingering close.
//!
//! Every accepted TCP connection takes a permit from `limits.max_connections`; one over the
//! cap is closed at once (before TLS, before any read), so idle or hostile clients can never
//! take the file descriptors the engine needs to open log segments and checkpoints. The
//! permit is released only when the socket is really closed, lingering included.
//!
//! Lingering close (nginx's `lingering_close`): when a connection ends, the server half-closes
//! its side (the client sees the whole response, then EOF) and reads and discards whatever the
//! client still sends, for at most [`LINGER_TOTAL`] and until [`LINGER_IDLE`] passes without
//! data, before closing. Closing a socket that still has unread data makes the kernel send a
//! reset, and a client still sending a body that was refused early (a 413) would then get a
//! broken pipe instead of the response.

use std::future::{ready, Future, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Longest a closing connection is drained.
pub const LINGER_TOTAL: Duration = Duration::from_secs(10);
/// A closing connection that sends nothing for this long is closed.
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// Caps open connections; hands out [`Conn`]s.
#[derive(Clone)]
pub(crate) struct ConnAcceptor {
    permits: Arc<Semaphore>,
    first_byte_timeout: Duration,
}

impl ConnAcceptor {
    /// `first_byte_timeout`: a new connection that sends nothing for this long is closed
    /// (hyper's header timer starts only once it knows the protocol, so it cannot see a
    /// connection that never sends a byte).
    pub(crate) fn new(max_connections: usize, first_byte_timeout: Duration) -> Self {
        ConnAcceptor {
            permits: Arc::new(Semaphore::new(max_connections)),
            first_byte_timeout,
        }
    }
}

impl<S> Accept<TcpStream, S> for ConnAcceptor {
    type Stream = Conn;
    type Service = S;
    type Future = Ready<io::Result<(Conn, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let _ = stream.set_nodelay(true);
                ready(Ok((
                    Conn {
                        inner: Some(stream),
                        permit: Some(permit),
                        first_byte: Some(Box::pin(tokio::time::sleep(self.first_byte_timeout))),
                    },
                    service,
                )))
            }
            Err(_) => {
                tracing::warn!("limits.max_connections reached: closing a new connection at once");
                drop(stream);
                ready(Err(io::Error::other("limits.max_connections reached")))
            }
        }
    }
}

/// One accepted connection: holds its permit, lingers when dropped.
pub(crate) struct Conn {
    inner: Option<TcpStream>,
    permit: Option<OwnedSemaphorePermit>,
    /// Until the first byte arrives: when a silent connection is given up.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let (Some(stream), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let permit = self.permit.take();
        rt.spawn(linger(stream, permit));
    }
}

async fn linger(mut stream: TcpStream, permit: Option<OwnedSemaphorePermit>) {
    let _ = stream.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER_TOTAL;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let idle = (tokio::time::Instant::now() + LINGER_IDLE).min(deadline);
        match tokio::time::timeout_at(idle, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => continue,
            _ => break,
        }
    }
    drop(stream);
    drop(permit);
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(s) = this.inner.as_mut() else {
            return Poll::Ready(Err(closed()));
        };
        let before = buf.filled().len();
        let r = Pin::new(s).poll_read(cx, buf);
        if let Some(deadline) = this.first_byte.as_mut() {
            match &r {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.first_byte = None,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within limits.header_read_timeout_ms",
                    )));
                }
                _ => {}
            }
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().inner.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// Raises the soft limit on open files to the hard limit (many connections and the engine's
/// files share it), and returns the soft limit now in force (`None`: unlimited, or not a Unix).
pub(crate) fn raise_nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let lim = getrlimit(Resource::Nofile);
        if lim.current != lim.maximum {
            // Refused (e.g. an unlimited hard limit on some systems): keep the soft limit.
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: lim.maximum,
                    maximum: lim.maximum,
                },
            );
        }
        getrlimit(Resource::Nofile).current
    }
    #[cfg(not(unix))]
    {
        None
    }
}
