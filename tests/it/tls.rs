//! TLS listeners: HTTP/1.1 and h2 (ALPN) reach the backends and are counted, SNI picks the
//! certificate, `X-Forwarded-Proto` says `https`, and a reload with a broken certificate keeps
//! serving with the one in force. Certificates are made in the test (rcgen); the client is
//! curl (Debian's has TLS and HTTP/2), pointed at 127.0.0.1 by `--resolve`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{fixture, Ports, Runoff};

/// A self-signed certificate for `names`, written as `<stem>.crt` / `<stem>.key` in `dir`.
fn cert(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let issued = rcgen::generate_simple_self_signed(names).unwrap();
    let (crt, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&crt, issued.cert.pem()).unwrap();
    std::fs::write(&key, issued.signing_key.serialize_pem()).unwrap();
    (crt, key)
}

/// `curl` over TLS to `name` (resolved to 127.0.0.1), trusting `ca`: "<http version> <status>",
/// or curl's error.
async fn curl(port: u16, name: &str, ca: &Path, extra: &[&str]) -> Result<String, String> {
    let url = format!("https://{name}:{port}/orders");
    let resolve = format!("{name}:{port}:127.0.0.1");
    let ca = ca.display().to_string();
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null"])
            .args([
                "-w",
                "%{http_version} %{http_code}",
                "--resolve",
                &resolve,
                "--cacert",
                &ca,
            ])
            .args(&extra)
            .arg(&url)
            .output()
            .expect("curl (apt-get install curl)")
    })
    .await
    .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn tls_config(p: &Ports, tls_port: u16, node: &str, certs: &[(PathBuf, PathBuf)]) -> String {
    let list: Vec<String> = certs
        .iter()
        .map(|(c, k)| format!("{{ cert: \"{}\", key: \"{}\" }}", c.display(), k.display()))
        .collect();
    format!(
        "listen: 127.0.0.1:{}\nlisten_tls:\n  - address: 127.0.0.1:{tls_port}\n    certs: [{}]\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{node}\" }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n",
        p.listen,
        list.join(", "),
        p.admin
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_speak_http1_and_h2_pick_the_certificate_by_sni_and_survive_a_bad_reload() {
    let node = fixture("node").echo().start().await;
    let n = node.addr.to_string();
    let dir = tempfile::tempdir().unwrap();
    let a = cert(dir.path(), "a", &["a.test"]);
    let b = cert(dir.path(), "b", &["b.test", "*.b.test"]);
    let tls_port = crate::harness::free_port();
    let (a2, b2) = (a.clone(), b.clone());
    let runoff =
        Runoff::start(move |p| tls_config(p, tls_port, &n, &[a2.clone(), b2.clone()])).await;

    // HTTP/1.1 and h2 by ALPN, each certificate by its name (a wildcard too).
    assert_eq!(
        curl(tls_port, "a.test", &a.0, &["--http1.1"]).await,
        Ok("1.1 200".into())
    );
    assert_eq!(
        curl(tls_port, "a.test", &a.0, &["--http2"]).await,
        Ok("2 200".into())
    );
    assert_eq!(
        curl(tls_port, "b.test", &b.0, &["--http2"]).await,
        Ok("2 200".into())
    );
    assert_eq!(
        curl(tls_port, "x.b.test", &b.0, &[]).await,
        Ok("2 200".into())
    );
    // b.test is not served a's certificate.
    assert!(curl(tls_port, "b.test", &a.0, &[]).await.is_err());
    // Plain HTTP still on its own port.
    let plain = reqwest::get(runoff.url("/orders")).await.unwrap();
    assert_eq!(plain.status(), 200);

    let got = node.received();
    assert_eq!(got.len(), 5);
    let protos: Vec<Option<&str>> = got.iter().map(|r| r.header("x-forwarded-proto")).collect();
    assert_eq!(
        protos,
        vec![
            Some("https"),
            Some("https"),
            Some("https"),
            Some("https"),
            Some("http")
        ]
    );
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "node"), ("status_class", "2xx")],
            5.0,
        )
        .await;
    // HTTP/2 frames over TLS are not taken for refused HTTP/1 header blocks.
    assert_eq!(
        m.sum("runoff_rejected_requests_total", &[]),
        0.0,
        "{}",
        m.dump("runoff_rejected")
    );

    // A reload with a broken certificate fails and the one in force stays.
    let old = dir.path().join("a-old.crt");
    std::fs::copy(&a.0, &old).unwrap();
    std::fs::write(&a.0, "not a certificate").unwrap();
    let r = runoff
        .api(reqwest::Method::POST, "/api/reload")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
    let text = r.text().await.unwrap();
    assert!(text.contains("listen_tls[0].certs[0].cert"), "{text}");
    assert_eq!(
        curl(tls_port, "a.test", &old, &[]).await,
        Ok("2 200".into()),
        "the old one stays"
    );
    assert_eq!(
        curl(tls_port, "b.test", &b.0, &[]).await,
        Ok("2 200".into())
    );
    // A reload with a new valid certificate for a.test puts it in force.
    let renewed = cert(dir.path(), "a", &["a.test"]);
    let r = runoff
        .api(reqwest::Method::POST, "/api/reload")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while curl(tls_port, "a.test", &renewed.0, &[]).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        curl(tls_port, "a.test", &old, &[]).await.is_err(),
        "the old one is gone"
    );
}

/// A TLS backend (tokio-rustls, its certificate for `name`): HTTP/2 when ALPN says `h2`, else
/// HTTP/1.1; records the version of each request and answers `hello over tls`.
struct TlsBackend {
    addr: std::net::SocketAddr,
    versions: std::sync::Arc<std::sync::Mutex<Vec<http::Version>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_backend(crt: &Path, key: &Path) -> TlsBackend {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(crt)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let versions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = versions.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        seen.lock().unwrap().push(req.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(
                                    b"hello over tls\n",
                                )),
                            ))
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(io, svc)
                    .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    TlsBackend {
        addr,
        versions,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_backends_are_verified_against_their_ca_and_spoken_to_in_http1_or_h2() {
    let dir = tempfile::tempdir().unwrap();
    let (crt, key) = cert(dir.path(), "backend", &["backend.test"]);
    let (other, _) = cert(dir.path(), "other", &["other.test"]);
    let backend = tls_backend(&crt, &key).await;
    let b = backend.addr;
    let config = |p: &Ports, tls: &str| {
        format!(
            "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  h1: {{ address: \"{b}\", tls: {tls} }}\n  h2: {{ address: \"{b}\", protocol: h2, tls: {tls} }}\nroutes:\n  - name: one\n    match: {{ path_prefix: /one }}\n    split: {{ h1: 1 }}\n  - name: two\n    match: {{ path_prefix: /two }}\n    split: {{ h2: 1 }}\n",
            p.listen, p.admin
        )
    };
    let trusted = format!("{{ sni: backend.test, ca_file: \"{}\" }}", crt.display());
    let runoff = Runoff::start(|p| config(p, &trusted)).await;
    let client = reqwest::Client::new();
    for path in ["/one", "/two"] {
        let r = client.get(runoff.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.text().await.unwrap(), "hello over tls\n");
    }
    assert_eq!(
        *backend.versions.lock().unwrap(),
        vec![http::Version::HTTP_11, http::Version::HTTP_2]
    );
    drop(runoff);

    // Trusting another CA: the backend's certificate is refused, counted as `tls`.
    let wrong = format!("{{ sni: backend.test, ca_file: \"{}\" }}", other.display());
    let runoff = Runoff::start(|p| config(p, &wrong)).await;
    let r = client.get(runoff.url("/one")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    runoff
        .expect_metric(
            "runoff_upstream_errors_total",
            &[("backend", "h1"), ("kind", "tls")],
            1.0,
        )
        .await;
    drop(runoff);

    // verify: false takes any certificate (and needs no SNI).
    let runoff = Runoff::start(|p| config(p, "{ verify: false }")).await;
    let r = client.get(runoff.url("/one")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}
