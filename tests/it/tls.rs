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
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "node"), ("status_class", "2xx")],
            5.0,
        )
        .await;

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
