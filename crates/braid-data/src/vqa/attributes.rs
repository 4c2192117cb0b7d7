//! What an easy-VQA image shows (one shape, one colour), read back from its own questions
//! and answers. The generator (`gen_data/generate_data.py` of github.com/vzhou842/easy-VQA)
//! asks about the image's single shape: "what color is the triangle?" -> colour (and the
//! shape named in the question), "what is the blue shape?" -> shape (and the colour named),
//! and yes/no questions whose truth (the answer, flipped by "not"/"no" in the question)
//! asserts or excludes the colour or shape they name. When every colour but one (or every
//! shape but one) is excluded, the remaining one is taken.

use std::collections::BTreeSet;

/// The 8 colours of easy-VQA.
pub const COLORS: [&str; 8] = ["red", "green", "blue", "black", "gray", "teal", "brown", "yellow"];
/// The 3 shapes of easy-VQA.
pub const SHAPES: [&str; 3] = ["circle", "rectangle", "triangle"];

/// The kind of answer a question takes, from the answer itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnswerType {
    /// "yes" or "no".
    YesNo,
    /// One of [`COLORS`].
    Color,
    /// One of [`SHAPES`].
    Shape,
}

impl AnswerType {
    /// The type of `answer` (trimmed, lower-cased), `None` for an answer outside easy-VQA's 13.
    pub fn of(answer: &str) -> Option<Self> {
        let a = answer.trim().to_lowercase();
        if a == "yes" || a == "no" {
            Some(Self::YesNo)
        } else if COLORS.contains(&a.as_str()) {
            Some(Self::Color)
        } else if SHAPES.contains(&a.as_str()) {
            Some(Self::Shape)
        } else {
            None
        }
    }

    /// `yes/no`, `color` or `shape`: the key of per-type reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::YesNo => "yes/no",
            Self::Color => "color",
            Self::Shape => "shape",
        }
    }
}

/// Facts about one attribute (colour or shape) gathered from several questions.
#[derive(Debug, Default, Clone)]
struct Evidence {
    asserted: BTreeSet<&'static str>,
    excluded: BTreeSet<&'static str>,
}

impl Evidence {
    /// The one value the evidence points to; `None` when it is unknown or contradictory.
    fn resolve(&self, all: &[&'static str]) -> Option<&'static str> {
        if !self.asserted.is_disjoint(&self.excluded) || self.asserted.len() > 1 {
            return None;
        }
        if let Some(&v) = self.asserted.iter().next() {
            return Some(v);
        }
        let left: Vec<_> = all.iter().filter(|v| !self.excluded.contains(*v)).collect();
        match left.as_slice() {
            [v] => Some(**v),
            _ => None,
        }
    }

    fn contradictory(&self) -> bool {
        !self.asserted.is_disjoint(&self.excluded) || self.asserted.len() > 1
    }
}

/// Colour and shape evidence of one image.
#[derive(Debug, Default, Clone)]
pub(crate) struct ImageFacts {
    color: Evidence,
    shape: Evidence,
}

fn word_in(words: &[&str], vocab: &[&'static str]) -> Option<&'static str> {
    vocab.iter().copied().find(|v| words.contains(v))
}

impl ImageFacts {
    /// Adds what `question` answered by `answer` says about the image.
    pub(crate) fn add(&mut self, question: &str, answer: &str) {
        let q = question.to_lowercase();
        let words: Vec<&str> =
            q.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| !w.is_empty()).collect();
        let color = word_in(&words, &COLORS);
        let shape = word_in(&words, &SHAPES);
        let answer = answer.trim().to_lowercase();
        match AnswerType::of(&answer) {
            Some(AnswerType::Color) => {
                self.color.asserted.extend(word_in(&[answer.as_str()], &COLORS));
                self.shape.asserted.extend(shape);
            }
            Some(AnswerType::Shape) => {
                self.shape.asserted.extend(word_in(&[answer.as_str()], &SHAPES));
                self.color.asserted.extend(color);
            }
            Some(AnswerType::YesNo) => {
                let negated = words.iter().any(|w| *w == "not" || *w == "no");
                let holds = (answer == "yes") != negated;
                // "is there a blue circle?" being false excludes neither attribute alone.
                let (c, s) = (color, shape);
                match (holds, c, s) {
                    (true, _, _) => {
                        self.color.asserted.extend(c);
                        self.shape.asserted.extend(s);
                    }
                    (false, Some(c), None) => {
                        self.color.excluded.insert(c);
                    }
                    (false, None, Some(s)) => {
                        self.shape.excluded.insert(s);
                    }
                    _ => {}
                }
            }
            None => {}
        }
    }

    /// (colour, shape), each `None` when unknown or contradictory.
    pub(crate) fn resolve(&self) -> (Option<&'static str>, Option<&'static str>) {
        (self.color.resolve(&COLORS), self.shape.resolve(&SHAPES))
    }

    /// Whether two questions disagree about the colour or the shape.
    pub(crate) fn contradictory(&self) -> bool {
        self.color.contradictory() || self.shape.contradictory()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(qa: &[(&str, &str)]) -> (Option<&'static str>, Option<&'static str>) {
        let mut f = ImageFacts::default();
        for (q, a) in qa {
            f.add(q, a);
        }
        f.resolve()
    }

    #[test]
    fn answer_types() {
        assert_eq!(AnswerType::of(" Yes"), Some(AnswerType::YesNo));
        assert_eq!(AnswerType::of("teal"), Some(AnswerType::Color));
        assert_eq!(AnswerType::of("triangle"), Some(AnswerType::Shape));
        assert_eq!(AnswerType::of("square"), None);
    }

    #[test]
    fn attributes_from_open_questions() {
        assert_eq!(
            facts(&[("what is the blue shape?", "rectangle")]),
            (Some("blue"), Some("rectangle"))
        );
        assert_eq!(
            facts(&[("what color is the triangle?", "red")]),
            (Some("red"), Some("triangle"))
        );
        assert_eq!(
            facts(&[("what color is the shape?", "gray"), ("what shape is present?", "circle")]),
            (Some("gray"), Some("circle"))
        );
    }

    #[test]
    fn yes_no_questions_assert_or_exclude_with_negation() {
        assert_eq!(
            facts(&[
                ("is there not a teal shape?", "no"),
                ("does the image contain a circle?", "yes")
            ]),
            (Some("teal"), Some("circle"))
        );
        let excluded = [("is no circle present?", "yes"), ("is there a triangle?", "no")];
        assert_eq!(facts(&excluded), (None, Some("rectangle")));
        assert_eq!(facts(&[("is there a red shape?", "no")]), (None, None));
    }

    #[test]
    fn contradictions_resolve_to_none() {
        let mut f = ImageFacts::default();
        f.add("what color is the shape?", "red");
        f.add("is there a red shape?", "no");
        assert!(f.contradictory());
        assert_eq!(f.resolve().0, None);
    }
}
