use super::*;

/// A byte-level BPE over "ab" with one merge and a special token, as GGUF would hold it.
fn tiny() -> Tokenizer {
    let json = serde_json::json!({
        "version": "1.0", "added_tokens": [{"id": 3, "content": "<|end|>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true}],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<|end|>": 3, "Ġ": 4}, "merges": [["a", "b"]]}
    });
    let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
    let cfg = TokenizerConfig { eos_ids: vec![3], bos_id: Some(3), ..Default::default() };
    Tokenizer::new(inner, cfg)
}

#[test]
fn encodes_merges_and_special_tokens() {
    let t = tiny();
    assert_eq!(t.encode("abab<|end|>", true).unwrap(), vec![2, 2, 3]);
    assert_eq!(t.decode(&[2, 4, 1, 3], true).unwrap(), "ab b");
    assert_eq!(t.decode(&[2, 3], false).unwrap(), "ab<|end|>");
}

#[test]
fn bos_is_added_only_when_asked() {
    let mut t = tiny();
    t.config.add_bos_token = true;
    assert_eq!(t.encode("a", true).unwrap(), vec![3, 0]);
    assert_eq!(t.encode("a", false).unwrap(), vec![0]);
}

#[test]
fn stream_emits_whole_characters() {
    let t = tiny();
    let mut s = t.stream(true);
    let mut out = String::new();
    for id in [2, 4, 1, 3] {
        if let Some(p) = s.push(id).unwrap() {
            out.push_str(&p);
        }
    }
    out.push_str(&s.finish().unwrap().unwrap_or_default());
    assert_eq!(out, "ab b");
    assert_eq!(s.ids(), &[2, 4, 1, 3]);
}
