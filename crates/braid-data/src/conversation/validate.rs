//! A [`Record`] checked into a [`ConversationSample`]: roles and their order, placeholders
//! against media, and every media file (extension, existence).

use std::path::{Path, PathBuf};

use braid_core::Modality;

use super::format::{Kind, RawTurn, Record, KINDS};
use super::{ConversationOptions, ConversationSample, Media, Role, Turn};

type Checked<T> = std::result::Result<T, String>;

/// A validated sample and how many times its file asks for it.
#[derive(Debug, Clone)]
pub(crate) struct Weighted {
    pub sample: ConversationSample,
    pub weight: u32,
}

/// The media placeholders of `text`, in order.
pub(crate) fn placeholders(text: &str) -> Vec<Modality> {
    text.match_indices('<')
        .filter_map(|(i, _)| {
            let rest = text.get(i..)?;
            KINDS.iter().map(|k| k.modality).find(|m| rest.starts_with(&m.placeholder()))
        })
        .collect()
}

/// Checks `record` against itself and the file system (media resolved against `root`).
/// The error is the message to put after the file name.
pub(crate) fn sample(
    record: Record,
    root: &Path,
    options: &ConversationOptions,
) -> Checked<Weighted> {
    let Record { locus, id, media, turns, weight, rejected } = record;
    let mut turns = roles(&turns).map_err(|e| format!("{locus}: {e}"))?;
    let mut files: Vec<Vec<PathBuf>> = Vec::with_capacity(KINDS.len());
    for (kind, names) in KINDS.iter().zip(&media) {
        let paths = names.iter().enumerate().map(|(i, name)| {
            media_path(root, name, kind)
                .map_err(|e| format!("{locus}: {}[{i}] {name:?}: {e}", kind.field))
        });
        files.push(paths.collect::<Checked<Vec<_>>>()?);
    }
    place(&mut turns, &files, options.prepend_missing_placeholders)
        .map_err(|e| format!("{locus}: {e}"))?;
    // The k-th placeholder takes the next file of its kind.
    let mut next = vec![0usize; KINDS.len()];
    let mut ordered = Vec::new();
    for turn in turns.iter().filter(|t| t.role == Role::User) {
        for m in placeholders(&turn.text) {
            let Some(k) = KINDS.iter().position(|kind| kind.modality == m) else { continue };
            let (Some(of_kind), Some(n)) = (files.get(k), next.get_mut(k)) else { continue };
            if let Some(path) = of_kind.get(*n) {
                ordered.push(Media { modality: m, path: path.clone() });
                *n += 1;
            }
        }
    }
    Ok(Weighted { sample: ConversationSample { id, media: ordered, turns, rejected }, weight })
}

/// Roles parsed and their order checked: an optional system turn, then user and assistant
/// alternating, starting with the user and ending with the assistant.
fn roles(raw: &[RawTurn]) -> Checked<Vec<Turn>> {
    if raw.is_empty() {
        return Err("conversations: empty".into());
    }
    let mut turns: Vec<Turn> = Vec::with_capacity(raw.len());
    for (k, t) in raw.iter().enumerate() {
        let role = Role::from_llava(&t.from).ok_or_else(|| {
            format!("conversations[{k}].from: {:?} is not a role (human or user, gpt or assistant, system)", t.from)
        })?;
        let offset = usize::from(matches!(turns.first(), Some(Turn { role: Role::System, .. })));
        let expected = if k < offset || (k == 0 && role == Role::System) {
            Role::System
        } else if (k - offset) % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        if role != expected {
            let why = match role {
                Role::System => "a system turn may only come first".to_string(),
                _ => format!(
                    "expected a {} turn (turns alternate human, gpt, starting with human)",
                    llava(expected)
                ),
            };
            return Err(format!("conversations[{k}].from: {:?}: {why}", t.from));
        }
        turns.push(Turn { role, text: t.value.clone() });
    }
    match turns.last() {
        Some(Turn { role: Role::System, .. }) => {
            Err("conversations: only a system turn, no question and answer".into())
        }
        Some(Turn { role: Role::User, .. }) => {
            let last = turns.len() - 1;
            Err(format!("conversations[{last}]: the conversation ends with a human turn (no answer to learn)"))
        }
        _ => Ok(turns),
    }
}

fn llava(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "human",
        Role::Assistant => "gpt",
    }
}

/// Checks that the user turns hold one placeholder per file of each kind and the other
/// turns none; with `prepend`, a kind with files and no placeholder at all gets them at
/// the start of the first user turn.
fn place(turns: &mut [Turn], files: &[Vec<PathBuf>], prepend: bool) -> Checked<()> {
    let mut counts = vec![0usize; KINDS.len()];
    for (k, turn) in turns.iter().enumerate() {
        for m in placeholders(&turn.text) {
            if turn.role != Role::User {
                let (role, ph) = (llava(turn.role), m.placeholder());
                return Err(format!("conversations[{k}]: a {role} turn holds `{ph}`; placeholders go in human turns"));
            }
            if let Some(c) =
                KINDS.iter().position(|kind| kind.modality == m).and_then(|i| counts.get_mut(i))
            {
                *c += 1;
            }
        }
    }
    let mut prefix = String::new();
    for ((kind, files), &count) in KINDS.iter().zip(files).zip(&counts) {
        let (n, ph) = (files.len(), kind.modality.placeholder());
        if count == n {
            continue;
        }
        if count == 0 && prepend {
            prefix.push_str(&format!("{ph}\n").repeat(n));
        } else if count == 0 {
            return Err(format!(
                "{}: {n} file(s) but no `{ph}` in the conversation; put `{ph}` where each belongs in the human turns, \
                 or set prepend_missing_placeholders",
                kind.field
            ));
        } else {
            return Err(format!(
                "{}: {n} file(s) but {count} `{ph}` placeholder(s) in the conversation",
                kind.field
            ));
        }
    }
    if let Some(first) = turns.iter_mut().find(|t| t.role == Role::User) {
        first.text.insert_str(0, &prefix);
    }
    Ok(())
}

/// `name` resolved against `root`, with an allowed extension, naming an existing file.
fn media_path(root: &Path, name: &str, kind: &Kind) -> Checked<PathBuf> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    let path = root.join(name);
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    if !ext.is_some_and(|e| kind.extensions.contains(&e.as_str())) {
        let allowed: Vec<String> = kind.extensions.iter().map(|e| format!(".{e}")).collect();
        return Err(format!("not an {} file (extensions {})", kind.modality, allowed.join(" ")));
    }
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("not a file (looked in {})", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("file not found (looked in {})", path.display()))
        }
        Err(e) => Err(format!("cannot be read ({e}; looked in {})", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(from: &str, value: &str) -> RawTurn {
        RawTurn { from: from.into(), value: value.into() }
    }

    #[test]
    fn placeholders_are_found_in_order() {
        assert_eq!(
            placeholders("<imu> a <image><image>b<audio> <video> <ima"),
            [Modality::Imu, Modality::Image, Modality::Image, Modality::Audio]
        );
        assert!(placeholders("").is_empty() && placeholders("é<").is_empty());
    }

    #[test]
    fn roles_alternate_after_an_optional_system_turn() {
        let ok = [
            turn("system", "s"),
            turn("user", "q"),
            turn("assistant", "a"),
            turn("human", "q"),
            turn("gpt", "a"),
        ];
        let roles_of: Vec<Role> = roles(&ok).unwrap().iter().map(|t| t.role).collect();
        assert_eq!(
            roles_of,
            [Role::System, Role::User, Role::Assistant, Role::User, Role::Assistant]
        );
        let bad = [
            (vec![], "conversations: empty"),
            (vec![turn("gpt", "a")], "conversations[0].from: \"gpt\": expected a human turn"),
            (
                vec![turn("human", "q"), turn("human", "q")],
                "conversations[1].from: \"human\": expected a gpt turn",
            ),
            (vec![turn("human", "q"), turn("system", "s")], "a system turn may only come first"),
            (
                vec![turn("human", "q"), turn("bot", "a")],
                "conversations[1].from: \"bot\" is not a role",
            ),
            (
                vec![turn("human", "q"), turn("gpt", "a"), turn("human", "q")],
                "conversations[2]: the conversation ends with a human turn",
            ),
            (vec![turn("system", "s")], "only a system turn"),
        ];
        for (turns, want) in bad {
            let err = roles(&turns).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}
