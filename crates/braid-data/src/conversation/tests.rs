use super::*;

/// A folder with `a.png`, `b.png`, `sub/c.jpg` (tiny images), `x.wav`, `r.csv`, and a
/// directory `d.png`.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::create_dir(dir.path().join("d.png")).unwrap();
    for name in ["a.png", "b.png", "sub/c.jpg"] {
        image::RgbImage::new(2, 2).save(dir.path().join(name)).unwrap();
    }
    // Media are not decoded here: any bytes will do.
    std::fs::write(dir.path().join("x.wav"), b"RIFF").unwrap();
    std::fs::write(dir.path().join("r.csv"), "t,ax\n0,1\n").unwrap();
    dir
}

fn open_with(
    dir: &Path,
    name: &str,
    text: &str,
    options: &ConversationOptions,
) -> Result<ConversationDataset> {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    ConversationDataset::open(&path, options)
}

fn open(dir: &Path, text: &str) -> Result<ConversationDataset> {
    open_with(dir, "data.json", text, &ConversationOptions::default())
}

/// The error of one sample (put at index 1, after a good one).
fn error_of(sample: &str) -> String {
    let dir = folder();
    let good = r#"{"id": "good", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}"#;
    open(dir.path(), &format!("[{good}, {sample}]")).unwrap_err().to_string()
}

const TWO_IMAGES: &str = r#"[{"id": 17, "image": ["a.png", "sub/c.jpg"], "audio": "x.wav",
    "conversations": [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": "<image>\nWhat is this? <audio>"},
        {"from": "gpt", "value": "a square"},
        {"from": "user", "value": "And this one? <image>"},
        {"from": "assistant", "value": "the same"}]}]"#;

#[test]
fn a_multi_turn_sample_with_two_images_and_audio() {
    let dir = folder();
    let data = open(dir.path(), TWO_IMAGES).unwrap();
    assert_eq!((data.len(), data.is_empty()), (1, false));
    assert_eq!(data.root, std::path::absolute(dir.path()).unwrap());
    assert_eq!(data.source, dir.path().join("data.json"));
    let s = data.get(0).unwrap();
    assert_eq!(s.id, "17");
    let kinds: Vec<Modality> = s.media.iter().map(|m| m.modality).collect();
    assert_eq!(kinds, [Modality::Image, Modality::Audio, Modality::Image]);
    let images: Vec<&Path> = s.media_of(Modality::Image).collect();
    assert_eq!(images, [data.root.join("a.png"), data.root.join("sub/c.jpg")]);
    let roles: Vec<Role> = s.turns.iter().map(|t| t.role).collect();
    assert_eq!(roles, [Role::System, Role::User, Role::Assistant, Role::User, Role::Assistant]);
    assert_eq!(s.turns[1].text, "<image>\nWhat is this? <audio>");
    assert!(data.get(1).is_none() && data.iter().count() == 1);
}

#[test]
fn jsonl_with_absolute_paths_and_blank_lines() {
    let dir = folder();
    let abs = std::path::absolute(dir.path().join("b.png")).unwrap();
    let line = |id: &str| {
        format!(
            r#"{{"id": "{id}", "image": {:?}, "imu": ["r.csv"], "conversations": [{{"from": "human", "value": "<imu><image> q"}}, {{"from": "gpt", "value": "a"}}]}}"#,
            abs.display().to_string()
        )
    };
    let text = format!("{}\n\n{}\n", line("p"), line("q"));
    let data = open_with(dir.path(), "d.jsonl", &text, &ConversationOptions::default()).unwrap();
    assert_eq!(data.len(), 2);
    let s = &data.samples[1];
    assert_eq!(
        s.media,
        [
            Media { modality: Modality::Imu, path: data.root.join("r.csv") },
            Media { modality: Modality::Image, path: abs.clone() }
        ]
    );
    let err = open_with(
        dir.path(),
        "d.jsonl",
        &format!("{}\n\n{}\n", line("p"), line("p")),
        &ConversationOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            r#"d.jsonl: sample "p" (index 1, line 3): duplicate id, first used at index 0"#
        ),
        "{err}"
    );
}

#[test]
fn bad_samples_are_one_line_errors_naming_file_sample_and_field() {
    let qa = r#"[{"from": "human", "value": "<image> q"}, {"from": "gpt", "value": "a"}]"#;
    let cases = [
        (r#"{"id": "17", "image": ["a.png", "b2.png"], "conversations": [{"from": "human", "value": "<image><image>"}, {"from": "gpt", "value": "a"}]}"#.to_string(),
         r#"data.json: sample "17" (index 1): image[1] "b2.png": file not found (looked in "#.to_string()),
        (format!(r#"{{"id": "s", "image": "d.png", "conversations": {qa}}}"#), r#"image[0] "d.png": not a file (looked in "#.into()),
        (format!(r#"{{"id": "s", "image": "x.wav", "conversations": {qa}}}"#), r#"sample "s" (index 1): image[0] "x.wav": not an image file (extensions .png .jpg"#.into()),
        (format!(r#"{{"id": "s", "image": "sub", "conversations": {qa}}}"#), "image[0] \"sub\": not an image file".into()),
        (format!(r#"{{"id": "s", "image": ["a.png", "b.png"], "conversations": {qa}}}"#), "image: 2 file(s) but 1 `<image>` placeholder(s)".into()),
        (r#"{"id": "s", "audio": "x.wav", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}"#.into(), "audio: 1 file(s) but no `<audio>` in the conversation".into()),
        (format!(r#"{{"id": "s", "conversations": {qa}}}"#), "image: 0 file(s) but 1 `<image>`".into()),
        (r#"{"id": "s", "image": "a.png", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<image>"}]}"#.into(), "conversations[1]: a gpt turn holds `<image>`".into()),
        (r#"{"id": "s", "conversations": []}"#.into(), r#"sample "s" (index 1): conversations: empty"#.into()),
        (r#"{"id": "s", "conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}"#.into(), "conversations[0].from: \"gpt\": expected a human turn".into()),
        (r#"{"id": "s", "conversations": [{"from": "human", "value": "q"}]}"#.into(), "ends with a human turn".into()),
        (r#"{"id": "s", "conversations": [], "caption": "x"}"#.into(), "unknown field `caption`".into()),
        (r#"{"id": "s", "conversations": [{"from": "human", "value": "q", "x": 1}]}"#.into(), "conversations[0]: unknown field `x`".into()),
        (r#"{"id": "good", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}"#.into(), r#"sample "good" (index 1): duplicate id, first used at index 0"#.into()),
    ];
    for (sample, want) in cases {
        let err = error_of(&sample);
        assert!(err.contains(&want) && !err.contains('\n'), "{sample}\nwant: {want}\ngot: {err}");
    }
}

#[test]
fn empty_and_malformed_files_are_errors() {
    let dir = folder();
    assert!(open(dir.path(), "[]").unwrap_err().to_string().ends_with("data.json: no samples"));
    let err = open_with(dir.path(), "d.jsonl", "\n\n", &ConversationOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no samples"), "{err}");
    assert!(open(dir.path(), r#"{"id": 1}"#).unwrap_err().to_string().contains("top-level array"));
    let err =
        ConversationDataset::open(dir.path().join("none.json"), &ConversationOptions::default())
            .unwrap_err()
            .to_string();
    assert!(err.contains("none.json"), "{err}");
    let small = ConversationOptions { max_file_bytes: 10, ..Default::default() };
    assert!(open_with(dir.path(), "data.json", TWO_IMAGES, &small)
        .unwrap_err()
        .to_string()
        .contains("max_file_bytes"));
    let skipped = ConversationOptions { skip: 1, ..Default::default() };
    let err = open_with(dir.path(), "data.json", TWO_IMAGES, &skipped).unwrap_err().to_string();
    assert!(err.contains("no samples left of 1 after skip 1"), "{err}");
}

#[test]
fn missing_placeholders_can_be_prepended() {
    let dir = folder();
    let text = r#"[{"id": 1, "image": ["a.png", "b.png"], "imu": "r.csv", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}]"#;
    let options = ConversationOptions { prepend_missing_placeholders: true, ..Default::default() };
    let data = open_with(dir.path(), "data.json", text, &options).unwrap();
    let s = &data.samples[0];
    assert_eq!(s.turns[0].text, "<image>\n<image>\n<imu>\nq");
    let names: Vec<_> = s.media.iter().filter_map(|m| m.path.file_name()).collect();
    assert_eq!(names, ["a.png", "b.png", "r.csv"]);
    // A kind with some of its placeholders is still an error: which file goes where is unknown.
    let text = text.replace("\"q\"", "\"<image> q\"");
    let err = open_with(dir.path(), "data.json", &text, &options).unwrap_err().to_string();
    assert!(err.contains("image: 2 file(s) but 1 `<image>`"), "{err}");
}

#[test]
fn split_turns_and_weights_on_open() {
    let dir = folder();
    let text = r#"[{"id": "w", "image": "a.png", "weight": 3, "conversations": [
        {"from": "human", "value": "<image>\nq0"}, {"from": "gpt", "value": "yes"},
        {"from": "human", "value": "q1"}, {"from": "gpt", "value": "no"}]},
        {"id": "v", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "yes"}]}]"#;
    let data = open_with(dir.path(), "data.json", text, &ConversationOptions::default()).unwrap();
    let ids: Vec<&str> = data.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["w", "w", "w", "v"]);
    let options = ConversationOptions {
        split_turns: 1,
        repeat: vec![RepeatRule { answers: vec!["yes".into()], times: 2 }],
        ..Default::default()
    };
    let data = open_with(dir.path(), "data.json", text, &options).unwrap();
    let ids: Vec<&str> = data.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["w#0", "w#0", "w#0", "w#0", "w#0", "w#0", "w#1", "w#1", "w#1", "v", "v"]);
    let second = data.iter().find(|s| s.id == "w#1").unwrap();
    assert_eq!(second.turns[0].text, "<image>\nq1");
    assert_eq!(second.media.len(), 1);
    let unweighted =
        ConversationOptions { use_weights: false, limit: Some(1), ..Default::default() };
    assert_eq!(open_with(dir.path(), "data.json", text, &unweighted).unwrap().len(), 1);
}
