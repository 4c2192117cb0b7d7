//! Continuous batching: sequences that join a running batch at different steps, with
//! different prompt lengths, settings and budgets, each produce what `generate` produces
//! for them alone; cancelled sequences leave without disturbing the others.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;

use braid_llm::generate::{generate, Batcher, GenerateConfig, SamplingConfig};
use braid_llm::{LanguageModel, TextModel, Weights};
use candle_core::{Device, Tensor};

fn model() -> TextModel {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/llm/qwen2_chat_tiny");
    TextModel::load(&dir, Weights::Frozen { dequantize: false }, &Device::Cpu).unwrap()
}

fn alone(tm: &TextModel, prompt: &[u32], cfg: &GenerateConfig) -> (Vec<u32>, String) {
    let (g, _) =
        generate(&tm.model, &tm.tokenizer, &[prompt.to_vec()], cfg, &Device::Cpu, &mut |_, _| {
            Ok(())
        })
        .unwrap();
    (g[0].tokens.clone(), g[0].text.clone())
}

#[test]
fn joining_and_leaving_sequences_equal_their_runs_alone() {
    let tm = model();
    let prompts: Vec<Vec<u32>> =
        vec![(10..17).collect(), (40..43).collect(), (60..80).collect(), (5..9).collect()];
    let cfgs = [
        GenerateConfig { max_new_tokens: 12, ignore_eos: true, ..Default::default() },
        GenerateConfig { max_new_tokens: 5, ignore_eos: true, ..Default::default() },
        GenerateConfig {
            max_new_tokens: 9,
            ignore_eos: true,
            sampling: SamplingConfig {
                temperature: 0.8,
                top_p: 0.9,
                seed: 7,
                ..Default::default()
            },
            ..Default::default()
        },
        GenerateConfig { max_new_tokens: 7, ignore_eos: true, ..Default::default() },
    ];
    // Sequence i joins before step joins[i].
    let joins = [0usize, 0, 3, 6];
    let want: Vec<(Vec<u32>, String)> =
        prompts.iter().zip(&cfgs).map(|(p, c)| alone(&tm, p, c)).collect();
    let mut batcher = Batcher::new(&tm.model, &tm.tokenizer, &Device::Cpu, 128);
    let mut streamed: HashMap<u64, String> = HashMap::new();
    let mut got: HashMap<u64, (Vec<u32>, String)> = HashMap::new();
    let (mut joined, mut joined_at) = ([false; 4], Vec::new());
    let mut step = 0;
    while got.len() < prompts.len() {
        for (i, j) in joins.iter().enumerate() {
            let ready = batcher.can_join(prompts[i].len(), cfgs[i].max_new_tokens);
            if *j <= step && !joined[i] && ready {
                let x =
                    Tensor::new(prompts[i].as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                let embeds = tm.model.embed_tokens(&x).unwrap();
                batcher.join(i as u64, &embeds, prompts[i].clone(), &cfgs[i]).unwrap();
                joined[i] = true;
                joined_at.push((i, step));
            }
        }
        let done = batcher
            .step(&mut |id, piece| {
                streamed.entry(id).or_default().push_str(piece);
                Ok(())
            })
            .unwrap();
        for (id, g) in done {
            got.insert(id, (g.tokens, g.text));
        }
        step += 1;
        assert!(step < 100, "never finished");
    }
    for (i, w) in want.iter().enumerate() {
        assert_eq!(&got[&(i as u64)], w, "sequence {i}");
        assert_eq!(&streamed[&(i as u64)], &w.1, "sequence {i} streamed");
    }
    assert!(batcher.is_empty());
    // The 20-token prompt waited for the batch to reach its length; the others joined
    // mid-batch when they arrived.
    println!("joined (sequence, step): {joined_at:?}");
    assert!(joined_at.contains(&(3, 6)), "{joined_at:?}");
    assert!(joined_at.iter().any(|&(i, s)| i == 2 && s > 3), "{joined_at:?}");
}

#[test]
fn a_cancelled_sequence_leaves_the_others_untouched() {
    let tm = model();
    let cfg = GenerateConfig { max_new_tokens: 10, ignore_eos: true, ..Default::default() };
    let (a, b): (Vec<u32>, Vec<u32>) = ((10..20).collect(), (30..34).collect());
    let want = alone(&tm, &b, &cfg);
    let mut batcher = Batcher::new(&tm.model, &tm.tokenizer, &Device::Cpu, 128);
    for (id, p) in [(0u64, &a), (1, &b)] {
        let x = Tensor::new(p.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        batcher.join(id, &tm.model.embed_tokens(&x).unwrap(), p.clone(), &cfg).unwrap();
    }
    let mut out = None;
    for step in 0..20 {
        if step == 2 {
            batcher.cancel(&[0]).unwrap();
            assert_eq!(batcher.len(), 1);
        }
        for (id, g) in batcher.step(&mut |_, _| Ok(())).unwrap() {
            assert_eq!(id, 1);
            out = Some((g.tokens, g.text));
        }
        if batcher.is_empty() {
            break;
        }
    }
    assert_eq!(out.unwrap(), want);
}
