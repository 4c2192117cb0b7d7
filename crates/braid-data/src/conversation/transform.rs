//! The sampling transforms of [`ConversationOptions`], on validated samples: `skip`,
//! `limit`, `split_turns`, then repetition by weight and rules.

use super::validate::{placeholders, Weighted};
use super::{ConversationOptions, ConversationSample, Media, Role, Turn};

/// More samples than this after repetition is refused: each copy is held in memory.
const MAX_SAMPLES: u64 = 100_000_000;

/// The samples `options` select, cut and repeat. The error is the message to put after the
/// file name.
pub(crate) fn apply(
    samples: Vec<Weighted>,
    options: &ConversationOptions,
) -> std::result::Result<Vec<ConversationSample>, String> {
    let kept = samples.into_iter().skip(options.skip).take(options.limit.unwrap_or(usize::MAX));
    let pieces: Vec<(ConversationSample, u64)> = kept
        .flat_map(|w| {
            let cut = split(w.sample, options.split_turns);
            cut.into_iter().map(move |p| (p, w.weight))
        })
        .map(|(p, weight)| {
            let copies = options.copies(&p, weight);
            (p, copies)
        })
        .collect();
    let total: u64 = pieces.iter().map(|(_, c)| c).sum();
    if total > MAX_SAMPLES {
        return Err(format!(
            "repeating by weight and `repeat` would make {total} samples, over {MAX_SAMPLES}"
        ));
    }
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for (piece, copies) in pieces {
        for _ in 1..copies {
            out.push(piece.clone());
        }
        out.push(piece);
    }
    Ok(out)
}

/// `sample` cut into pieces of at most `pairs` question/answer pairs (0: whole). Each
/// piece keeps the system turn and sees every file of the sample: the placeholders of
/// files whose placeholder lies in another piece go first in its first user turn, so the
/// piece's media are those files (in media order) then its own.
pub(crate) fn split(sample: ConversationSample, pairs: usize) -> Vec<ConversationSample> {
    let system: Vec<Turn> =
        sample.turns.iter().take_while(|t| t.role == Role::System).cloned().collect();
    let qa = sample.turns.get(system.len()..).unwrap_or_default();
    let per = pairs.saturating_mul(2);
    if pairs == 0 || qa.len() <= per {
        return vec![sample];
    }
    let mut pieces = Vec::new();
    let mut first = 0; // index in `sample.media` of the first file placed in this piece
    let count = qa.len().div_ceil(per);
    for (k, chunk) in qa.chunks(per).enumerate() {
        let own: usize = chunk
            .iter()
            .filter(|t| t.role == Role::User)
            .map(|t| placeholders(&t.text).len())
            .sum();
        let end = (first + own).min(sample.media.len());
        let before = sample.media.get(..first).unwrap_or_default();
        let after = sample.media.get(end..).unwrap_or_default();
        let inside = sample.media.get(first..end).unwrap_or_default();
        let others: Vec<Media> = before.iter().chain(after).cloned().collect();
        let prefix: String =
            others.iter().map(|m| format!("{}\n", m.modality.placeholder())).collect();
        let mut turns = system.clone();
        turns.extend(chunk.iter().cloned());
        if let Some(t) = turns.iter_mut().find(|t| t.role == Role::User) {
            t.text.insert_str(0, &prefix);
        }
        let media = others.into_iter().chain(inside.iter().cloned()).collect();
        // A rejected answer belongs to the conversation's last turn: its last piece.
        let rejected = if k + 1 == count { sample.rejected.clone() } else { None };
        pieces.push(ConversationSample {
            id: format!("{}#{k}", sample.id),
            media,
            turns,
            rejected,
        });
        first = end;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_core::Modality;
    use std::path::PathBuf;

    fn t(role: Role, text: &str) -> Turn {
        Turn { role, text: text.into() }
    }

    fn m(modality: Modality, name: &str) -> Media {
        Media { modality, path: PathBuf::from(name) }
    }

    /// Image a in the first question, audio x in the third, image b in the fourth.
    fn four_pairs() -> ConversationSample {
        let mut turns = vec![t(Role::System, "sys")];
        for (q, a) in
            [("<image>\nq0", "a0"), ("q1", "a1"), ("<audio> q2", "a2"), ("q3 <image>", "a3")]
        {
            turns.extend([t(Role::User, q), t(Role::Assistant, a)]);
        }
        let media = vec![
            m(Modality::Image, "a.png"),
            m(Modality::Audio, "x.wav"),
            m(Modality::Image, "b.png"),
        ];
        ConversationSample { id: "s".into(), media, turns, rejected: None }
    }

    fn names(s: &ConversationSample) -> Vec<&str> {
        s.media.iter().filter_map(|m| m.path.to_str()).collect()
    }

    #[test]
    fn short_conversations_and_zero_stay_whole() {
        assert_eq!(split(four_pairs(), 0), vec![four_pairs()]);
        assert_eq!(split(four_pairs(), 4), vec![four_pairs()]);
        assert_eq!(split(four_pairs(), usize::MAX), vec![four_pairs()]);
    }

    #[test]
    fn every_piece_sees_every_file_with_its_placeholders_first() {
        let pieces = split(four_pairs(), 1);
        let ids: Vec<&str> = pieces.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["s#0", "s#1", "s#2", "s#3"]);
        let texts: Vec<&str> = pieces.iter().map(|p| p.turns[1].text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "<audio>\n<image>\n<image>\nq0",
                "<image>\n<audio>\n<image>\nq1",
                "<image>\n<image>\n<audio> q2",
                "<image>\n<audio>\nq3 <image>"
            ]
        );
        assert_eq!(names(&pieces[0]), ["x.wav", "b.png", "a.png"]);
        assert_eq!(names(&pieces[2]), ["a.png", "b.png", "x.wav"]);
        assert_eq!(names(&pieces[3]), ["a.png", "x.wav", "b.png"]);
        for p in &pieces {
            assert_eq!((p.turns.len(), p.turns[0].text.as_str()), (3, "sys"));
            // The k-th placeholder still stands for media[k].
            let order: Vec<Modality> = p.turns.iter().flat_map(|t| placeholders(&t.text)).collect();
            assert_eq!(order, p.media.iter().map(|m| m.modality).collect::<Vec<_>>());
        }
        let halves = split(four_pairs(), 3);
        assert_eq!(halves.len(), 2);
        assert_eq!((halves[0].turns.len(), halves[1].turns.len()), (7, 3));
        assert_eq!(names(&halves[1]), ["a.png", "x.wav", "b.png"]);
    }

    #[test]
    fn skip_limit_and_weights_apply_in_order() {
        let samples: Vec<Weighted> = (0..5)
            .map(|i| {
                let turns = vec![t(Role::User, "q"), t(Role::Assistant, "a")];
                Weighted {
                    sample: ConversationSample {
                        id: i.to_string(),
                        media: vec![],
                        turns,
                        rejected: None,
                    },
                    weight: i + 1,
                }
            })
            .collect();
        let o = ConversationOptions { skip: 1, limit: Some(2), ..Default::default() };
        let ids: Vec<String> =
            apply(samples.clone(), &o).unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["1", "1", "2", "2", "2"]);
        let o = ConversationOptions { use_weights: false, skip: 4, ..Default::default() };
        assert_eq!(apply(samples.clone(), &o).unwrap().len(), 1);
        assert!(apply(samples, &ConversationOptions { skip: 9, ..Default::default() })
            .unwrap()
            .is_empty());
    }
}
