//! The live comparison page (`GET /` on the admin listener): one HTML file, its script and its
//! style, bundled into the binary at build time (no CDN, no network at run time, no build step:
//! plain JavaScript and SVG). The page polls the admin API and draws what runoff computed.
//!
//! Must not: carry data (it is served without the token, which the page asks for before it
//! shows anything), or be framed by another site (it has controls).

use http::{Response, StatusCode};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/page.js");
const STYLE: &str = include_str!("page/page.css");
/// Two bars facing each other.
const ICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect x='2' y='4' width='5' height='10' fill='#1f6feb'/><rect x='9' y='2' width='5' height='12' fill='#d1242f'/></svg>";

/// The page's files by path, or `None`.
pub(super) fn file(path: &str) -> Option<Response<Vec<u8>>> {
    let (content_type, body) = match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX),
        "/page.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "/page.css" => ("text/css; charset=utf-8", STYLE),
        "/favicon.svg" | "/favicon.ico" => ("image/svg+xml", ICON),
        _ => return None,
    };
    let mut resp = Response::new(body.as_bytes().to_vec());
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    for (name, value) in [
        ("content-type", content_type),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
    ] {
        if let (Ok(n), Ok(v)) = (
            http::header::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_served_with_guarding_headers() {
        let page = file("/").expect("page");
        assert!(String::from_utf8_lossy(page.body()).contains("/page.js"));
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        assert!(file("/page.js").is_some() && file("/page.css").is_some());
        assert!(file("/api/summary").is_none());
    }
}
