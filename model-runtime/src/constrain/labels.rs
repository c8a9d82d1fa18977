//! Classification: the output must be exactly one of the given labels.

use super::Constraint;

/// Accepts exactly one label out of a fixed set.
#[derive(Debug, Clone)]
pub struct LabelMachine {
    labels: Vec<Vec<u8>>,
    written: Vec<u8>,
}

impl LabelMachine {
    /// A machine over `labels` (empty labels are ignored).
    pub fn new<S: AsRef<str>>(labels: &[S]) -> Self {
        let labels = labels
            .iter()
            .map(|l| l.as_ref().as_bytes().to_vec())
            .filter(|l| !l.is_empty())
            .collect();
        Self {
            labels,
            written: Vec::new(),
        }
    }

    /// The label written so far, if it is a whole label.
    pub fn label(&self) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| **l == self.written)
            .and_then(|l| std::str::from_utf8(l).ok())
    }
}

impl Constraint for LabelMachine {
    fn accepts(&self, bytes: &[u8]) -> bool {
        let n = self.written.len();
        self.labels.iter().any(|l| {
            l.len() >= n + bytes.len() && l.starts_with(&self.written) && l[n..].starts_with(bytes)
        })
    }

    fn advance(&mut self, bytes: &[u8]) {
        self.written.extend_from_slice(bytes);
    }

    fn is_complete(&self) -> bool {
        self.may_end()
            && !self
                .labels
                .iter()
                .any(|l| l.len() > self.written.len() && l.starts_with(&self.written))
    }

    fn may_end(&self) -> bool {
        self.labels.contains(&self.written)
    }

    fn completion(&self) -> Vec<u8> {
        if self.may_end() {
            return Vec::new();
        }
        self.labels
            .iter()
            .find(|l| l.starts_with(&self.written))
            .map(|l| l[self.written.len()..].to_vec())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_label_prefixes_are_accepted() {
        let mut m = LabelMachine::new(&["approve", "reject", "review"]);
        assert!(m.accepts(b"re"));
        assert!(!m.accepts(b"x"));
        m.advance(b"re");
        assert!(!m.is_complete());
        assert!(m.accepts(b"ject"));
        assert!(!m.accepts(b"jected"));
        m.advance(b"ject");
        assert!(m.is_complete());
        assert_eq!(m.label(), Some("reject"));
    }

    #[test]
    fn a_label_that_prefixes_another_may_end_but_is_not_complete() {
        let mut m = LabelMachine::new(&["yes", "yes please"]);
        m.advance(b"yes");
        assert!(m.may_end());
        assert!(!m.is_complete());
    }

    #[test]
    fn completion_finishes_a_started_label() {
        let mut m = LabelMachine::new(&["approve", "reject"]);
        m.advance(b"ap");
        assert_eq!(m.completion(), b"prove".to_vec());
    }
}
