//! The node transport over real sockets: a cluster listener (`stream_server`) with a recording
//! handler, called by `StreamClient`s holding certificates from the cluster's CA, from another
//! CA, and by a TLS client with no certificate at all.

use keystead_crypto::pki::DevPki;
use keystead_replication::frame::{self, Kind};
use keystead_replication::network::PeerFailure;
use keystead_replication::stream_client::StreamClient;
use keystead_replication::{peer, stream_server, PeerTls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TIMEOUT: Duration = Duration::from_secs(5);

fn tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> PeerTls {
    PeerTls {
        ca_pem: ca_pem.as_bytes().to_vec(),
        cert_pem: cert_pem.as_bytes().to_vec(),
        key_pem: zeroize::Zeroizing::new(key_pem.as_bytes().to_vec()),
    }
}

/// A loopback socket, its address, and the server TLS of a member of `cluster`.
async fn bind_as_member(
    cluster: &DevPki,
) -> (tokio::net::TcpListener, String, Arc<rustls::ServerConfig>) {
    let server_tls = peer::server_tls(&tls(
        &cluster.ca_cert_pem,
        &cluster.server_cert_pem,
        &cluster.server_key_pem,
    ))
    .expect("server TLS");
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("address").to_string();
    (socket, addr, server_tls)
}

/// A node of cluster A listening on loopback; its handler counts requests and answers each
/// with `[kind, body]`, after a pause for read-index requests (to test abandoned calls).
async fn listener(cluster: &DevPki) -> (String, Arc<AtomicUsize>) {
    let (socket, addr, server_tls) = bind_as_member(cluster).await;
    let handled = Arc::new(AtomicUsize::new(0));
    let count = handled.clone();
    let handler: stream_server::Handler = Arc::new(move |kind, body| {
        count.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if kind == Kind::ReadIndex {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let body = String::from_utf8(body).ok()?;
            frame::encode_answer(&(kind as u8, body)).ok()
        })
    });
    tokio::spawn(stream_server::serve(socket, server_tls, handler));
    (addr, handled)
}

fn node_of(cluster: &DevPki) -> PeerTls {
    let (cert, key) = DevPki::issue_leaf(
        &cluster.ca_cert_pem,
        &cluster.ca_key_pem,
        &["127.0.0.1".to_string()],
    )
    .expect("node certificate");
    tls(&cluster.ca_cert_pem, &cert, &key)
}

#[tokio::test]
async fn cluster_members_are_answered_and_everyone_else_is_refused_before_a_request_is_read() {
    let cluster = DevPki::generate(&["127.0.0.1".to_string()]).expect("cluster CA");
    let other = DevPki::generate(&["127.0.0.1".to_string()]).expect("another CA");
    let (addr, handled) = listener(&cluster).await;

    // A member: answered, and again on the pooled stream.
    let member = StreamClient::new(&node_of(&cluster), None).expect("client");
    for round in 0..3 {
        let answer: (u8, String) = member
            .call(&addr, Kind::Vote, &round, TIMEOUT)
            .await
            .expect("a member is answered");
        assert_eq!(answer, (Kind::Vote as u8, round.to_string()));
    }
    assert_eq!(handled.load(Ordering::SeqCst), 3);

    // A certificate from another CA, even one trusting the cluster's CA: refused.
    let stranger = node_of(&other);
    let intruder = StreamClient::new(
        &PeerTls {
            ca_pem: cluster.ca_cert_pem.as_bytes().to_vec(),
            ..stranger.clone()
        },
        None,
    )
    .expect("client");
    let refused: Result<(u8, String), PeerFailure> = intruder
        .call(&addr, Kind::Append, &"entries", TIMEOUT)
        .await;
    assert!(refused.is_err(), "a foreign certificate was answered");

    // A client that trusts only its own CA does not accept the cluster's listener either.
    let distrustful = StreamClient::new(&stranger, None).expect("client");
    let refused: Result<(u8, String), PeerFailure> =
        distrustful.call(&addr, Kind::Vote, &1, TIMEOUT).await;
    assert!(matches!(refused, Err(PeerFailure::Unreachable(_))));

    // No client certificate at all: the handshake is refused, the request never read.
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cluster.ca_cert_pem.as_bytes()) {
        roots.add(cert.expect("CA")).expect("CA");
    }
    let anonymous = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let server_name = ServerName::try_from("127.0.0.1").expect("name");
    let outcome = async {
        let mut stream = tokio_rustls::TlsConnector::from(Arc::new(anonymous))
            .connect(server_name, tcp)
            .await?;
        let request = frame::encode_request(Kind::Vote, &7).map_err(std::io::Error::other)?;
        stream.write_all(&request).await?;
        stream.flush().await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(TIMEOUT, outcome).await {
        Ok(Ok(answer)) => assert!(answer.is_empty(), "an anonymous client was answered"),
        Ok(Err(_)) => {}
        Err(_) => panic!("the listener neither refused nor answered an anonymous client"),
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        3,
        "a refused request reached the handler"
    );
}

#[tokio::test]
async fn an_abandoned_call_never_leaves_its_answer_for_the_next_call() {
    let cluster = DevPki::generate(&["127.0.0.1".to_string()]).expect("cluster CA");
    let (addr, _) = listener(&cluster).await;
    let client = StreamClient::new(&node_of(&cluster), None).expect("client");

    // Answered after 300 ms; the caller gives up after 50.
    let abandoned: Result<(u8, String), PeerFailure> = client
        .call(&addr, Kind::ReadIndex, &"slow", Duration::from_millis(50))
        .await;
    assert!(abandoned.is_err());
    // Had the stream gone back to the pool, this would read the slow answer.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let answer: (u8, String) = client
        .call(&addr, Kind::Propose, &"next", TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(answer, (Kind::Propose as u8, "\"next\"".to_string()));
}

/// A peer that answers one request per stream and then closes it, as a peer that restarted
/// leaves every stream pooled to its old process.
async fn one_answer_per_stream(cluster: &DevPki) -> (String, Arc<AtomicUsize>) {
    let (socket, addr, server_tls) = bind_as_member(cluster).await;
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        for _ in 0..100 {
            let Ok((tcp, _)) = socket.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                continue;
            };
            let Ok(request) = frame::read(&mut stream).await else {
                continue;
            };
            let (kind, body) = frame::split_request(&request).expect("a request");
            let body = String::from_utf8(body.to_vec()).expect("utf-8");
            let answer = frame::encode_answer(&(kind as u8, body)).expect("answer");
            let _ = frame::write(&mut stream, &answer).await;
            // Closed without a word, as by a process that died.
            drop(stream);
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_stream_the_peer_closed_while_pooled_is_not_used_again() {
    let cluster = DevPki::generate(&["127.0.0.1".to_string()]).expect("cluster CA");
    let (addr, accepted) = one_answer_per_stream(&cluster).await;
    let client = StreamClient::new(&node_of(&cluster), None).expect("client");
    for round in 0..3 {
        // Give the peer's close time to arrive before the pooled stream is taken again.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer: (u8, String) = client
            .call(&addr, Kind::Vote, &round, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("call {round} failed on a stale stream: {e:?}"));
        assert_eq!(answer, (Kind::Vote as u8, round.to_string()));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one fresh stream per call"
    );
}
