//! Stop strings: generation ends when the text contains one, and streamed text holds back
//! any tail that could still become one (so a stop string is never half printed).
//! Reference: `transformers.StopStringCriteria`.

/// The strings that end a generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopStrings {
    stops: Vec<String>,
}

impl StopStrings {
    /// Non-empty strings from `stops`.
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect() }
    }

    /// The earliest stop string in `text`: (byte offset, the string).
    pub fn find(&self, text: &str) -> Option<(usize, &str)> {
        self.stops
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|i| (i, s.as_str())))
            .min_by_key(|&(i, _)| i)
    }

    /// How much of `text` can be shown: all but the longest tail that begins a stop string.
    pub fn safe_len(&self, text: &str) -> usize {
        let held = self
            .stops
            .iter()
            .flat_map(|s| {
                (1..s.len()).rev().filter(|&n| s.is_char_boundary(n)).map(move |n| &s[..n])
            })
            .filter(|prefix| text.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        text.len() - held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_earliest_and_holds_back_partial_matches() {
        let s = StopStrings::new(&["\n\n".to_string(), "User:".to_string(), String::new()]);
        assert_eq!(s.find("Hi.\n\nUser: x"), Some((3, "\n\n")));
        assert_eq!(s.find("Hi."), None);
        assert_eq!(s.safe_len("Hello Us"), 6);
        assert_eq!(s.safe_len("Hello\n"), 5);
        assert_eq!(s.safe_len("Hello"), 5);
    }
}
