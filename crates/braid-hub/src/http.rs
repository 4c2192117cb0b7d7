//! HTTP plumbing: one ureq agent (rustls with the platform's CA store, via ureq's
//! `native-certs` feature, which corporate egress proxies need), the base URLs that tests
//! and mirrors override, and errors that say in one line what to do when offline.

use std::time::Duration;

use braid_core::Error;

/// Default PyPI Simple index (PEP 503 / PEP 691).
pub const PYPI_URL: &str = "https://pypi.org/simple";
/// Default npm registry.
pub const NPM_URL: &str = "https://registry.npmjs.org";
/// Default Hugging Face hub.
pub const HF_URL: &str = "https://huggingface.co";

/// An agent that trusts the system's CA store and honours `HTTPS_PROXY` & co.
pub(crate) fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(20))
        .timeout_read(Duration::from_secs(60))
        .try_proxy_from_env(true)
        .user_agent(concat!("braid/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// `explicit`, else the environment variable `var`, else `default`; no trailing `/`.
pub(crate) fn base_url(explicit: Option<&str>, var: &str, default: &str) -> String {
    let env = std::env::var(var).ok().filter(|s| !s.is_empty());
    explicit
        .map(str::to_string)
        .or(env)
        .unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

/// GET `url` with extra headers; maps failures to one-line [`Error::Network`]s.
pub(crate) fn get(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<ureq::Response, Error> {
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.set(k, v);
    }
    req.call().map_err(|e| network_error(url, e))
}

fn network_error(url: &str, e: ureq::Error) -> Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let text = resp.status_text().to_string();
            Error::Network { url: url.to_string(), msg: format!("HTTP {code} {text}") }
        }
        ureq::Error::Transport(t) => offline(url, &transport_reason(&t)),
    }
}

/// The message for a host that cannot be reached.
pub(crate) fn offline(url: &str, reason: &str) -> Error {
    Error::Network {
        url: url.to_string(),
        msg: format!(
            "cannot reach it: {reason}; check the network or set BRAID_HOME to a cache that has it"
        ),
    }
}

fn transport_reason(t: &ureq::Transport) -> String {
    let mut parts = vec![t.kind().to_string()];
    if let Some(m) = t.message() {
        parts.push(m.to_string());
    }
    let mut src = std::error::Error::source(t);
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.dedup();
    parts.join(": ").replace('\n', " ")
}

/// Resolves a link found on page `base` (absolute, scheme-relative, root-relative or
/// relative, as PEP 503 allows) into an absolute URL.
pub(crate) fn join(base: &str, link: &str) -> String {
    if link.starts_with("http://") || link.starts_with("https://") {
        return link.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    if let Some(rest) = link.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    let origin = &base[..host_end];
    let (dir, rel) = match link.strip_prefix('/') {
        Some(abs) => (String::new(), abs),
        None => {
            let path = &base[host_end..];
            let dir = path.rfind('/').map_or("", |i| &path[..i]);
            (dir.trim_start_matches('/').to_string(), link)
        }
    };
    let mut segs: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            ".." => drop(segs.pop()),
            "." => {}
            s => segs.push(s),
        }
    }
    format!("{origin}/{}", segs.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_links_like_a_browser() {
        let page = "https://pypi.org/simple/aeon/";
        assert_eq!(join(page, "https://f.org/a.whl"), "https://f.org/a.whl");
        assert_eq!(join(page, "//f.org/a.whl"), "https://f.org/a.whl");
        assert_eq!(join(page, "/packages/a.whl"), "https://pypi.org/packages/a.whl");
        assert_eq!(join(page, "../../packages/x/a.whl"), "https://pypi.org/packages/x/a.whl");
        assert_eq!(
            join("http://127.0.0.1:9/simple/p/", "a.whl"),
            "http://127.0.0.1:9/simple/p/a.whl"
        );
    }
}
