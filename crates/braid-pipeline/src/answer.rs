//! Short greedy answers to several questions about the same media, as a VQA evaluation
//! asks them: each on its own (no earlier turns), the media before it. The prompt up to
//! and through the media is shared by every question: it runs once, and the questions
//! continue from its cached keys and values, those of equal token length together as one
//! batch (no padding, so each row is exactly its own single-question run).

use std::collections::BTreeMap;

use braid_core::Result;
use braid_llm::generate::{generate_cached, GenerateConfig, SamplingConfig};
use braid_llm::LanguageModel;
use candle_core::Tensor;

use crate::{qa_messages, Input, Pipeline};

/// Greedy answers of at most `max_new_tokens` tokens, one per question, trimmed.
pub fn answer_questions(
    pipeline: &Pipeline,
    media: &[Input],
    questions: &[&str],
    max_new_tokens: usize,
) -> Result<Vec<String>> {
    let prompter = pipeline.prompter()?;
    let cfg = GenerateConfig {
        max_new_tokens,
        sampling: SamplingConfig { temperature: 0.0, ..Default::default() },
        ..Default::default()
    };
    let llm = pipeline.llm()?;
    let kinds: Vec<_> = media.iter().map(|m| m.modality).collect();
    let prompts = questions
        .iter()
        .map(|q| prompter.prompt_ids(&qa_messages(&kinds, &[], Some(q))))
        .collect::<Result<Vec<_>>>()?;
    let Some(first) = prompts.first() else { return Ok(Vec::new()) };
    let ids: Vec<u32> = prompter.placeholders().iter().map(|p| p.id).collect();
    let shared = shared_prefix(&prompts, &ids);
    let mut prefix = llm.new_cache();
    llm.forward_last(&pipeline.embed_prompt(&first[..shared], media)?, None, Some(&mut prefix))?;
    let mut by_length: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, p) in prompts.iter().enumerate() {
        by_length.entry(p.len()).or_default().push(i);
    }
    let mut answers = vec![String::new(); prompts.len()];
    for rows in by_length.values() {
        let rest: Vec<u32> =
            rows.iter().flat_map(|&i| prompts[i][shared..].iter().copied()).collect();
        let ids = Tensor::from_vec(
            rest,
            (rows.len(), prompts[rows[0]].len() - shared),
            pipeline.device(),
        )?;
        let histories: Vec<Vec<u32>> = rows.iter().map(|&i| prompts[i].clone()).collect();
        let mut cache = prefix.repeat_batch(rows.len())?;
        let (gens, _) = generate_cached(
            llm,
            prompter.tokenizer(),
            &llm.embed_tokens(&ids)?,
            None,
            &mut cache,
            &histories,
            &cfg,
            &mut |_, _| Ok(()),
        )?;
        for (&i, g) in rows.iter().zip(gens) {
            answers[i] = g.text.trim().to_string();
        }
    }
    Ok(answers)
}

/// Length of the prompt prefix all `prompts` share, through the last placeholder at
/// least, and short of every prompt's end (each keeps one token of its own to run).
fn shared_prefix(prompts: &[Vec<u32>], placeholders: &[u32]) -> usize {
    let Some(first) = prompts.first() else { return 0 };
    let mut n = prompts
        .iter()
        .skip(1)
        .fold(first.len(), |n, p| n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count()));
    n = n.min(prompts.iter().map(Vec::len).min().unwrap_or(0).saturating_sub(1));
    let through_media = first.iter().rposition(|t| placeholders.contains(t)).map_or(0, |i| i + 1);
    n.max(through_media)
}

#[cfg(test)]
mod tests {
    use super::shared_prefix;

    #[test]
    fn the_shared_prefix_covers_the_media_and_leaves_each_prompt_a_token() {
        assert_eq!(shared_prefix(&[vec![1, 9, 2, 3, 4], vec![1, 9, 2, 5]], &[9]), 3);
        // One prompt: everything but its last token.
        assert_eq!(shared_prefix(&[vec![1, 9, 2, 3]], &[9]), 3);
        // Prompts that part right after the image share it through the image.
        assert_eq!(shared_prefix(&[vec![1, 9, 2], vec![1, 9, 3]], &[9]), 2);
        assert_eq!(shared_prefix(&[vec![1, 9, 8, 9, 2], vec![1, 9, 8, 9, 3]], &[9]), 4);
        assert_eq!(shared_prefix(&[], &[9]), 0);
    }
}
