//! A PagerDuty at a distance, for the TLS run: the plain-HTTP stand-in behind a TLS
//! terminator with a throwaway certificate, behind a TCP relay that delays every byte by
//! half a round trip each way and holds a new connection's first bytes for one more round
//! trip (the TCP handshake a loopback `connect` skips). A client then pays what it would
//! across a network: 1 round trip for TCP, 1 for TLS 1.3, 1 per request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// TLS on the outside, `plain` (the stand-in) inside; the certificate and key are the
/// DER files `tools/bench_tls_cert.py` wrote into `dir`.
pub async fn tls_terminator(dir: &Path, plain: SocketAddr) -> SocketAddr {
    let cert = CertificateDer::from(std::fs::read(dir.join("server.der")).unwrap());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        std::fs::read(dir.join("server.key.der")).unwrap(),
    ));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("the bench certificate");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut inner) = TcpStream::connect(plain).await else {
                    return;
                };
                let _ = inner.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut inner).await;
            });
        }
    });
    addr
}

/// A relay to `upstream` that behaves like a network with round-trip time `rtt`.
pub async fn distance(upstream: SocketAddr, rtt: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let accepted = Instant::now();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                // The client's connect returned at once; over a network its SYN, SYN-ACK
                // and ACK would have taken a round trip before its first byte left.
                tokio::spawn(delayed(client_read, server_write, rtt / 2, accepted + rtt));
                delayed(server_read, client_write, rtt / 2, accepted).await;
            });
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk leaving `one_way` after it arrived (and not before
/// `not_before`), in order, as a network link with that latency and no bandwidth limit.
async fn delayed(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    one_way: Duration,
    not_before: Instant,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let due = Instant::now().max(not_before) + one_way;
                if tx.send((due, buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}
