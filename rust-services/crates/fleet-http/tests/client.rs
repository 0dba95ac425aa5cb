//! The client against loopback servers written here (canned raw responses, so framing
//! errors can be produced), a rustls server, and a tiny CONNECT proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use fleet_http::client::{Client, Error, Proxy, Request, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads a request header (through the blank line); returns it as text.
async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Serves one connection: reads the request header, writes `answer`, closes. Returns the
/// address and a handle yielding the request header.
async fn one_shot(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let head = read_head(&mut s).await;
        s.write_all(answer).await.unwrap();
        s.shutdown().await.ok();
        head
    });
    (addr, task)
}

fn plain() -> Client {
    Client::tcp(Proxy::none())
}

fn short() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        response: Some(Duration::from_secs(5)),
        idle: Some(Duration::from_secs(5)),
        total: Some(Duration::from_secs(10)),
    }
}

fn chain_has_unexpected_eof(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::UnexpectedEof
        {
            return true;
        }
        cause = c.source();
    }
    false
}

#[tokio::test]
async fn content_length_body() {
    let (addr, head) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
    let r = plain()
        .send(Request::get(format!("http://{addr}/a?b=1")).header("x-test", "yes"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"hello");
    let head = head.await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /a?b=1 http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
    assert!(head.contains("x-test: yes\r\n"), "{head}");
}

#[tokio::test]
async fn chunked_body() {
    let (addr, _) = one_shot(
        b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
    )
    .await;
    let r = plain()
        .send(Request::get(format!("http://{addr}/")))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"abcde");
}

#[tokio::test]
async fn body_cut_short_is_an_error() {
    let (addr, _) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").await;
    let r = plain()
        .send(Request::get(format!("http://{addr}/")))
        .await
        .unwrap();
    let e = r.bytes(100).await.unwrap_err();
    assert!(matches!(e, Error::Body { .. }), "{e:?}");
    let (addr, _) = one_shot(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").await;
    let r = plain()
        .send(Request::get(format!("http://{addr}/")))
        .await
        .unwrap();
    assert!(matches!(r.bytes(100).await, Err(Error::Body { .. })));
}

#[tokio::test]
async fn bad_framing_is_an_error() {
    let (addr, _) =
        one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc").await;
    let e = plain()
        .send(Request::get(format!("http://{addr}/")))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exchange { .. }), "{e:?}");
}

#[tokio::test]
async fn streams_the_body_as_it_arrives() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (got_first, first_seen) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        s.write_all(b"d\r\n{\"n\":1}\r\n{\"n\"\r\n").await.unwrap();
        s.flush().await.unwrap();
        // The rest only once the client has read the first line: no buffering of the body.
        first_seen.await.unwrap();
        s.write_all(b"6\r\n:2}\r\n\n\r\n0\r\n\r\n").await.unwrap();
    });
    let r = plain()
        .send(Request::get(format!("http://{addr}/events")))
        .await
        .unwrap();
    let mut lines = r.lines(1024);
    assert_eq!(lines.next_line().await.unwrap().unwrap(), b"{\"n\":1}");
    got_first.send(()).unwrap();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), b"{\"n\":2}");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), b"");
    assert_eq!(lines.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn oversize_bodies_are_refused() {
    // Declared too large: refused from the header.
    let (addr, _) = one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n").await;
    let r = plain()
        .send(Request::get(format!("http://{addr}/")))
        .await
        .unwrap();
    let e = r.bytes(10).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { limit: 10, .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("http://{addr}/: response body larger than 10 bytes")
    );
    // Chunked, so only found out while reading.
    let (addr, _) = one_shot(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n",
    )
    .await;
    let r = plain()
        .send(Request::get(format!("http://{addr}/")))
        .await
        .unwrap();
    assert!(matches!(r.bytes(10).await, Err(Error::TooLarge { .. })));
}

#[tokio::test]
async fn timeouts_fire() {
    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let quick = Timeouts {
        response: Some(Duration::from_millis(200)),
        ..short()
    };
    let e = plain()
        .send(Request::get(format!("http://{addr}/")).timeouts(quick))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ResponseTimeout { .. }), "{e:?}");
    assert!(e.is_timeout());
    let total = Timeouts::total(Duration::from_secs(5), Duration::from_millis(200));
    let e = plain()
        .send(Request::get(format!("http://{addr}/")).timeouts(total))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TotalTimeout { .. }), "{e:?}");

    // A header, part of the body, then silence.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let idle = Timeouts {
        idle: Some(Duration::from_millis(200)),
        ..short()
    };
    let mut r = plain()
        .send(Request::get(format!("http://{addr}/")).timeouts(idle))
        .await
        .unwrap();
    assert_eq!(&r.chunk().await.unwrap().unwrap()[..], b"abc");
    let e = r.chunk().await.unwrap_err();
    assert!(matches!(e, Error::IdleTimeout { .. }), "{e:?}");
}

#[tokio::test]
async fn refused_connection_names_the_url_and_chains_the_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/healthy");
    let e = plain().send(Request::get(&url)).await.unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{url}: cannot connect to 127.0.0.1:{port}")
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[tokio::test]
async fn unix_socket_with_a_streamed_request_body() {
    let dir = std::env::temp_dir().join(format!("fleet-http-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("s.sock");
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let head = read_head(&mut s).await;
        let mut body = vec![0u8; 200_000];
        s.read_exact(&mut body).await.unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        (head, body)
    });
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let client = Client::unix(&socket);
    let r = client
        .send(
            Request::new(fleet_http::client::Method::POST, "/images/load?quiet=1")
                .header("content-type", "application/x-tar")
                .body(fleet_http::client::Body::reader(
                    std::io::Cursor::new(payload.clone()),
                    payload.len() as u64,
                )),
        )
        .await
        .unwrap();
    assert_eq!(
        r.url(),
        format!("unix:{}:/images/load?quiet=1", socket.display())
    );
    assert_eq!(&r.bytes(10).await.unwrap()[..], b"ok");
    let (head, body) = server.await.unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.contains("content-length: 200000\r\n"), "{head}");
    assert!(head.contains("host: docker\r\n"), "{head}");
    assert_eq!(body, payload);
    // A reader shorter than its declared length fails the request.
    let listener = tokio::net::UnixListener::bind(dir.join("t.sock")).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let _ = s.read_to_end(&mut Vec::new()).await;
    });
    let e = Client::unix(dir.join("t.sock"))
        .send(
            Request::new(fleet_http::client::Method::POST, "/x")
                .body(fleet_http::client::Body::reader(&b"abc"[..], 10)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Exchange { .. }), "{e:?}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---- TLS ----

fn ca_config() -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    let ca =
        rustls::pki_types::CertificateDer::from_pem_slice(include_bytes!("data/ca.pem")).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let certs =
        rustls::pki_types::CertificateDer::pem_slice_iter(include_bytes!("data/server.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(include_bytes!("data/server.key"))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// How a TLS test server ends its answer.
#[derive(Clone, Copy)]
enum Ending {
    /// close_notify, then close.
    Clean,
    /// The TCP connection closed without close_notify.
    Truncated,
}

/// A TLS server answering every connection with `answer`, ended as `ending`.
async fn tls_server(answer: &'static [u8], ending: Ending) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = acceptor();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                read_head(&mut tls).await;
                tls.write_all(answer).await.unwrap();
                tls.flush().await.unwrap();
                match ending {
                    Ending::Clean => {
                        tls.shutdown().await.ok();
                    }
                    Ending::Truncated => {
                        let (mut tcp, _) = tls.into_inner();
                        tcp.shutdown().await.ok();
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_with_close_notify_is_complete() {
    let addr = tls_server(b"HTTP/1.1 200 OK\r\n\r\nread to the end", Ending::Clean).await;
    let r = Client::tls(ca_config(), Proxy::none())
        .send(Request::get(format!("https://localhost:{}/", addr.port())).timeouts(short()))
        .await
        .unwrap();
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"read to the end");
}

#[tokio::test]
async fn tls_truncated_without_close_notify_is_an_error() {
    // Mid-body (Content-Length 100, 5 bytes sent).
    let addr = tls_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello",
        Ending::Truncated,
    )
    .await;
    let client = Client::tls(ca_config(), Proxy::none());
    let url = format!("https://localhost:{}/", addr.port());
    let r = client
        .send(Request::get(&url).timeouts(short()))
        .await
        .unwrap();
    let e = r.bytes(1000).await.unwrap_err();
    assert!(matches!(e, Error::Body { .. }), "{e:?}");
    // A body delimited by the end of the connection: without close_notify the end is not
    // proven, so this is the truncation rustls reports, not a short body.
    let addr = tls_server(b"HTTP/1.1 200 OK\r\n\r\nhello", Ending::Truncated).await;
    let url = format!("https://localhost:{}/", addr.port());
    let r = client
        .send(Request::get(&url).timeouts(short()))
        .await
        .unwrap();
    let e = r.bytes(1000).await.unwrap_err();
    assert!(matches!(e, Error::Body { .. }), "{e:?}");
    assert!(chain_has_unexpected_eof(&e), "{e:?}");
}

#[tokio::test]
async fn tls_untrusted_certificate_fails_the_handshake() {
    let addr = tls_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        Ending::Clean,
    )
    .await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let no_roots = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let url = format!("https://localhost:{}/", addr.port());
    let e = Client::tls(Arc::new(no_roots), Proxy::none())
        .send(Request::get(&url).timeouts(short()))
        .await
        .unwrap_err();
    let Error::Tls { source, host, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(host, "localhost");
    assert_eq!(
        e.to_string(),
        format!("{url}: TLS handshake with localhost failed")
    );
    let inner = source
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>());
    assert!(
        matches!(inner, Some(rustls::Error::InvalidCertificate(_))),
        "{source:?}"
    );
    let e = Client::tcp(Proxy::none())
        .send(Request::get(&url))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoTls { .. }), "{e:?}");
}

// ---- proxies ----

/// A CONNECT proxy that resolves `origin.test` to `origin` itself (so a request that gets
/// through proves the tunnel was used: the client cannot resolve that name) and answers an
/// absolute-form `GET` itself. Counts connections.
async fn proxy(origin: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let line = head.lines().next().unwrap_or_default().to_string();
                if let Some(target) = line.strip_prefix("CONNECT ") {
                    let target = target.trim_end_matches(" HTTP/1.1");
                    if target != format!("origin.test:{}", origin.port()) {
                        s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                            .await
                            .ok();
                        return;
                    }
                    let mut up = TcpStream::connect(origin).await.unwrap();
                    s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                } else {
                    let body = format!("proxied {line}");
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    s.write_all(answer.as_bytes()).await.ok();
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn https_goes_through_a_connect_tunnel() {
    let origin = tls_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\norigin",
        Ending::Clean,
    )
    .await;
    let (proxy_addr, count) = proxy(origin).await;
    let via = Proxy::new(None, Some(&format!("http://{proxy_addr}")), None).unwrap();
    let client = Client::tls(ca_config(), via);
    let r = client
        .send(Request::get(format!("https://origin.test:{}/x", origin.port())).timeouts(short()))
        .await
        .unwrap();
    assert_eq!(&r.bytes(100).await.unwrap()[..], b"origin");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // A tunnel the proxy refuses.
    let e = client
        .send(Request::get("https://elsewhere.test/").timeouts(short()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::TunnelRefused { status: 403, .. }),
        "{e:?}"
    );
    // Plain http goes to the proxy in absolute form.
    let via = Proxy::new(Some(&proxy_addr), None, None).unwrap();
    let r = Client::tcp(via)
        .send(Request::get("http://plain.test/p?q=1").timeouts(short()))
        .await
        .unwrap();
    assert_eq!(
        &r.bytes(100).await.unwrap()[..],
        b"proxied GET http://plain.test/p?q=1 HTTP/1.1"
    );
}

#[tokio::test]
async fn no_proxy_goes_direct() {
    let origin = tls_server(
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\norigin",
        Ending::Clean,
    )
    .await;
    let (proxy_addr, count) = proxy(origin).await;
    let url = format!("https://localhost:{}/", origin.port());
    for no_proxy in ["localhost", "example.com, .localhost", "*"] {
        let via = Proxy::new(None, Some(&proxy_addr), Some(no_proxy)).unwrap();
        let r = Client::tls(ca_config(), via)
            .send(Request::get(&url).timeouts(short()))
            .await
            .unwrap();
        assert_eq!(&r.bytes(100).await.unwrap()[..], b"origin", "{no_proxy}");
    }
    assert_eq!(count.load(Ordering::SeqCst), 0);
    // Not listed: the proxy gets it (and refuses: it only tunnels to origin.test).
    let via = Proxy::new(None, Some(&proxy_addr), Some("example.com")).unwrap();
    let e = Client::tls(ca_config(), via)
        .send(Request::get(&url).timeouts(short()))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TunnelRefused { .. }), "{e:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// A keep-alive server: answers each request of a connection with a 2-byte body, closes the
/// connection after `per_connection` answers (without saying so); counts the connections.
async fn keep_alive_server(per_connection: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                for _ in 0..per_connection {
                    if read_head(&mut s).await.is_empty() {
                        return;
                    }
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
                s.shutdown().await.ok();
            });
        }
    });
    (url, accepted)
}

async fn get_ok(client: &Client, url: &str) {
    let r = client
        .send(Request::get(url).timeouts(short()))
        .await
        .unwrap();
    assert_eq!(&r.bytes(16).await.unwrap()[..], b"ok");
}

#[tokio::test]
async fn keep_alive_sends_the_next_requests_on_the_same_connection() {
    let (url, accepted) = keep_alive_server(100).await;
    let client = plain().keep_alive();
    for _ in 0..3 {
        get_ok(&client, &url).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    // A body left unread: its connection is not reused.
    let r = client
        .send(Request::get(&url).timeouts(short()))
        .await
        .unwrap();
    drop(r);
    get_ok(&client, &url).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A request with a body goes on a connection of its own.
    let r = client
        .send(Request::new(fleet_http::client::Method::POST, &url).body(b"x".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(&r.bytes(16).await.unwrap()[..], b"ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn without_keep_alive_and_after_the_server_closed_a_new_connection_each() {
    let (url, accepted) = keep_alive_server(100).await;
    for _ in 0..3 {
        get_ok(&plain(), &url).await;
    }
    let client = plain();
    for _ in 0..2 {
        get_ok(&client, &url).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    // The server closes each connection after its answer: the idle one is found closed and
    // every request still gets its answer.
    let (url, accepted) = keep_alive_server(1).await;
    let client = plain().keep_alive();
    for _ in 0..3 {
        get_ok(&client, &url).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}
