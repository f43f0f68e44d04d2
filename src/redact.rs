//! Redaction of configured secret strings from text (tool outputs, error messages, logs).
//!
//! A [`Redactor`] holds a set of secrets and replaces every occurrence of any of them with
//! [`REDACTED`]. It is cheap to clone (the secrets are shared) and its `Debug` output shows only
//! how many secrets it holds.
//!
//! ```
//! use realtime_agents::Redactor;
//!
//! let redactor = Redactor::new(["sk-live-1234", "hunter2-pw"]);
//! assert_eq!(
//!     redactor.redact("key=sk-live-1234, password=hunter2-pw"),
//!     "key=[REDACTED], password=[REDACTED]"
//! );
//! // Nothing to hide: the input comes back borrowed, without an allocation.
//! assert!(matches!(redactor.redact("hello"), std::borrow::Cow::Borrowed("hello")));
//! // The secrets never show in `Debug` output.
//! assert_eq!(format!("{redactor:?}"), "Redactor { secrets: 2 }");
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// What every occurrence of a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Secrets shorter than this many characters are ignored: redacting every `"a"` or `"42"` would
/// mangle ordinary text while hiding nothing worth hiding.
pub const MIN_SECRET_LEN: usize = 4;

/// Replaces configured secret strings with [`REDACTED`].
///
/// Built from any list of strings; empty strings, strings shorter than [`MIN_SECRET_LEN`]
/// characters and duplicates are ignored. Matching is exact (case-sensitive, byte for byte).
///
/// Overlapping secrets are handled by covering: every character that belongs to *any*
/// occurrence of *any* secret is hidden, and occurrences that overlap (including a secret and a
/// longer secret that contains it) collapse into one [`REDACTED`] marker, so no fragment of a
/// secret survives whichever order the secrets were given in.
///
/// ```
/// use realtime_agents::Redactor;
///
/// // Overlapping and nested secrets leave nothing behind.
/// let r = Redactor::new(["abcdef", "cdefgh", "abcd", "x"]);
/// assert_eq!(r.len(), 3, "`x` is too short to be a secret");
/// assert_eq!(r.redact("<abcdefgh>"), "<[REDACTED]>");
/// assert_eq!(r.redact("abcd abcdef"), "[REDACTED] [REDACTED]");
/// ```
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, deduplicated.
    secrets: Arc<[Box<str>]>,
}

impl Redactor {
    /// A redactor for these secrets (see the type's docs for what is ignored).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<Box<str>> = secrets
            .into_iter()
            .map(|s| Box::<str>::from(s.as_ref()))
            .filter(|s| s.chars().count() >= MIN_SECRET_LEN)
            .collect();
        list.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        list.dedup();
        Self {
            secrets: list.into(),
        }
    }

    /// How many secrets are redacted.
    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    /// Whether there is nothing to redact.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `text` contains any secret.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(&**s))
    }

    /// `text` with every occurrence of every secret replaced by [`REDACTED`]. Borrows (and
    /// allocates nothing) when no secret occurs.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        // Byte ranges of all occurrences, overlapping ones included.
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for secret in self.secrets.iter() {
            let mut from = 0;
            while let Some(found) = text[from..].find(&**secret) {
                let start = from + found;
                spans.push((start, start + secret.len()));
                // Next search starts one character further, so overlapping occurrences of the
                // same secret ("aaaa" in "aaaaa") are all found.
                let step = text[start..].chars().next().map_or(1, char::len_utf8);
                from = start + step;
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(text);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0; // text[..copied] is handled
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end) = spans[i];
            i += 1;
            while i < spans.len() && spans[i].0 < end {
                end = end.max(spans[i].1);
                i += 1;
            }
            out.push_str(&text[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// Like [`redact`](Self::redact) for an owned string: returns it unchanged (no copy) when
    /// no secret occurs.
    pub fn redact_string(&self, text: String) -> String {
        match self.redact(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(redacted) => redacted,
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Redactor {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Self::new(iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(secrets: &[&str]) -> Redactor {
        Redactor::new(secrets)
    }

    #[test]
    fn replaces_every_occurrence() {
        let red = r(&["sk-abc123"]);
        assert_eq!(
            red.redact("sk-abc123 and sk-abc123sk-abc123!"),
            "[REDACTED] and [REDACTED][REDACTED]!"
        );
        assert_eq!(red.redact("sk-abc123"), "[REDACTED]");
        assert_eq!(red.redact(""), "");
    }

    #[test]
    fn borrows_when_nothing_matches() {
        let red = r(&["secret-value"]);
        assert!(matches!(red.redact("secret-valu"), Cow::Borrowed(_)));
        assert!(matches!(Redactor::default().redact("x"), Cow::Borrowed(_)));
        let s = String::from("plain text");
        let ptr = s.as_ptr();
        let same = red.redact_string(s);
        assert_eq!(same.as_ptr(), ptr, "no copy");
        assert_eq!(red.redact_string("a secret-value".into()), "a [REDACTED]");
    }

    #[test]
    fn ignores_short_empty_and_duplicate_secrets() {
        let red = r(&["", "a", "abc", "abcd", "abcd", "日本語"]);
        assert_eq!(red.len(), 1);
        assert_eq!(red.redact("a abc abcd 日本語"), "a abc [REDACTED] 日本語");
        assert!(r(&["", "xy"]).is_empty());
        // Four characters, whatever their byte length.
        assert_eq!(r(&["日本語だ"]).redact("は日本語だよ"), "は[REDACTED]よ");
    }

    #[test]
    fn nested_secrets_are_hidden_whole_in_any_order() {
        for secrets in [["token", "token-long-part"], ["token-long-part", "token"]] {
            let red = r(&secrets);
            assert_eq!(
                red.redact("a token-long-part b token c"),
                "a [REDACTED] b [REDACTED] c"
            );
        }
    }

    #[test]
    fn overlapping_secrets_leave_no_fragment() {
        let red = r(&["abcdef", "defghi"]);
        assert_eq!(red.redact("xxabcdefghixx"), "xx[REDACTED]xx");
        // Overlapping occurrences of one secret.
        assert_eq!(r(&["aaaa"]).redact("baaaaab"), "b[REDACTED]b");
        // Adjacent (not overlapping) occurrences stay separate markers.
        assert_eq!(r(&["abcd"]).redact("abcdabcd"), "[REDACTED][REDACTED]");
    }

    #[test]
    fn multibyte_text_around_secrets() {
        let red = r(&["ключ-1234"]);
        assert_eq!(red.redact("→ключ-1234←"), "→[REDACTED]←");
        assert_eq!(r(&["éééé"]).redact("ééééé"), "[REDACTED]");
    }

    #[test]
    fn debug_shows_only_the_count() {
        let red = r(&["sk-very-secret", "another-secret"]);
        let shown = format!("{red:?} {red:#?}");
        assert!(
            !shown.contains("sk-very") && !shown.contains("another"),
            "{shown}"
        );
        assert!(shown.contains('2'));
        assert!(red.contains_secret("x another-secret"));
        assert!(!red.contains_secret("another"));
        let collected: Redactor = vec!["abcd".to_owned()].into_iter().collect();
        assert_eq!(collected.len(), 1);
    }
}
