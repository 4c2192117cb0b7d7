//! `hf:ORG/NAME`: a Hugging Face hub model repository, for users who are online. Files are
//! listed by the hub API (`GET /api/models/ORG/NAME`, field `siblings[].rfilename`) and
//! downloaded from `/ORG/NAME/resolve/main/<file>` into `$BRAID_HOME/hf/ORG/NAME`;
//! `HF_TOKEN` is sent as a bearer token when set. Hub files have no pinned digests here,
//! so each file is only made atomic (`.part`, then rename).

use std::path::PathBuf;

use braid_core::{Error, Result};

use crate::download::{fetch_file, Download};
use crate::extract::is_safe_relative;
use crate::http;
use crate::options::{FetchOptions, Fetched};

/// Downloads every file of repository `repo` (`ORG/NAME`).
pub fn fetch(repo: &str, opts: &FetchOptions) -> Result<Fetched> {
    if repo.split('/').count() != 2 || !is_safe_relative(repo) {
        return Err(Error::Invalid(format!("`hf:{repo}`: expected hf:ORG/NAME")));
    }
    let base = http::base_url(opts.hf_url.as_deref(), "BRAID_HF_URL", http::HF_URL);
    let token =
        std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()).map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = token.iter().map(|t| ("Authorization", t.as_str())).collect();
    let agent = http::agent();
    let api = format!("{base}/api/models/{repo}");
    let body = http::get(&agent, &api, &headers)?
        .into_string()
        .map_err(|e| http::offline(&api, &e.to_string()))?;
    let files = list_files(&body).map_err(|msg| Error::Network { url: api.clone(), msg })?;
    let dir = opts.home().join("hf").join(repo);
    let mut paths = Vec::new();
    for f in &files {
        let dest = dir.join(f);
        if opts.force || !dest.is_file() {
            let url = format!("{base}/{repo}/resolve/main/{f}");
            let d = Download {
                url: &url,
                dest: &dest,
                sha256: None,
                headers: &headers,
                quiet: opts.quiet,
            };
            fetch_file(&agent, &d)?;
        }
        paths.push(dest);
    }
    Ok(Fetched {
        name: format!("hf:{repo}"),
        main: dir.clone(),
        dir,
        files: paths,
        downloaded: true,
    })
}

fn list_files(body: &str) -> std::result::Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("bad hub API answer: {e}"))?;
    let siblings =
        v.get("siblings").and_then(|s| s.as_array()).ok_or("hub API answer has no `siblings`")?;
    let files: Vec<String> = siblings
        .iter()
        .filter_map(|s| s.get("rfilename")?.as_str())
        .filter(|f| is_safe_relative(f) && !f.starts_with('.'))
        .map(str::to_string)
        .collect();
    Ok(files)
}

/// Where `hf:ORG/NAME` is cached.
pub fn hf_dir(repo: &str, home: &std::path::Path) -> PathBuf {
    home.join("hf").join(repo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_repository_files() {
        let body = r#"{"id":"a/b","siblings":[{"rfilename":"config.json"},{"rfilename":"../x"},{"rfilename":".gitattributes"},{"rfilename":"1_Pooling/config.json"}]}"#;
        assert_eq!(
            list_files(body),
            Ok(vec!["config.json".to_string(), "1_Pooling/config.json".to_string()])
        );
        assert!(list_files("{}").is_err());
    }

    #[test]
    fn rejects_bad_repo_names() {
        let opts = FetchOptions { hf_url: Some("http://127.0.0.1:9".into()), ..Default::default() };
        assert!(fetch("../etc", &opts).is_err());
        assert!(fetch("justone", &opts).is_err());
    }
}
