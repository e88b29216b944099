//! Node transport, server side: the cluster listener. It accepts TLS streams whose client
//! presents a certificate from the cluster CA (anyone else fails the handshake, before a byte
//! of a request is read), and answers each stream's request frames one at a time through a
//! [`Handler`] (`peer.rs` in production).

use crate::frame::{self, Kind};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that takes longer than this is abandoned.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A stream with no request for this long is closed: it is held by a peer that is gone or has
/// replaced it. Peers drop their idle streams well before (`stream_client::MAX_IDLE_AGE`).
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Answers one request: its answer frame (`frame::encode_answer`), or `None` to close the
/// stream (an undecodable request).
pub type Handler = Arc<
    dyn Fn(Kind, Vec<u8>) -> Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>> + Send + Sync,
>;

/// Accepts streams on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, handler: Handler) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(serve_stream(acceptor.clone(), tcp, handler.clone()));
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "cluster listener: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_stream(acceptor: TlsAcceptor, tcp: TcpStream, handler: Handler) {
    let peer = tcp.peer_addr().ok();
    // Answers are written whole; Nagle would only hold the last segment back.
    let _ = tcp.set_nodelay(true);
    let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(?peer, error = %e, "cluster listener: TLS handshake refused");
            return;
        }
        Err(_) => return,
    };
    loop {
        let contents = match tokio::time::timeout(IDLE_TIMEOUT, frame::read(&mut stream)).await {
            Ok(Ok(contents)) => contents,
            // The peer closed the stream, sent garbage, or went quiet.
            Ok(Err(_)) | Err(_) => return,
        };
        let Ok((kind, body)) = frame::split_request(&contents) else {
            tracing::info!(
                ?peer,
                "cluster listener: unknown request; closing the stream"
            );
            return;
        };
        let body = body.to_vec();
        let Some(answer) = handler(kind, body).await else {
            tracing::info!(
                ?peer,
                ?kind,
                "cluster listener: undecodable request; closing"
            );
            return;
        };
        if frame::write(&mut stream, &answer).await.is_err() {
            return;
        }
    }
}
