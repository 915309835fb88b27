//! Which interfaces `--iface` asks for: exact names and shell-style glob patterns
//! (`eth*`, `veth?`, `en[ops]*`, `[!l]*`).
//!
//! The matcher is hand-written rather than taken from the `glob` or `globset` crates:
//! interface names are at most 15 bytes with no path separators, so none of those
//! crates' path semantics apply, `globset` would pull in `regex` (a heavy build here), and
//! the whole fnmatch subset is a few dozen lines with a table test. Patterns are parsed
//! once at startup, so a malformed one (`eth[0`) is a usage error, never a silent literal.

use std::fmt;

/// A malformed pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--iface {pattern:?}: {problem}; globs accept * (any run), ? (one character), \
     [abc], [a-z] and [!abc]"
)]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong.
    pub problem: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`.
    One,
    /// `*`.
    Any,
    /// `[...]`: inclusive ranges (a single character is a range of one).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// One `--iface` entry: an exact name, or a glob when it holds `*`, `?` or `[`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The interface of exactly this name: it must exist at startup.
    Exact(String),
    /// Every interface whose name matches, now or later; none at startup is fine.
    Glob(Glob),
}

/// A parsed glob pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

impl Glob {
    /// The pattern as given.
    #[must_use]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl Selector {
    /// Parses one `--iface` entry.
    ///
    /// # Errors
    /// A glob with an unclosed or empty `[...]`, or a reversed range.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if !text.contains(['*', '?', '[']) {
            return Ok(Self::Exact(text.to_owned()));
        }
        let error = |problem| PatternError {
            pattern: text.to_owned(),
            problem,
        };
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => Token::Any,
                '?' => Token::One,
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    // A `]` right after `[` or `[!` is a member, as in fnmatch(3).
                    let mut first = true;
                    loop {
                        let start = chars.next().ok_or_else(|| error("unclosed ["))?;
                        if start == ']' && !first {
                            break;
                        }
                        first = false;
                        let end = if chars.next_if_eq(&'-').is_some() {
                            match chars.peek() {
                                Some(&']') | None => {
                                    // A trailing `-` is a member: `[a-]`.
                                    ranges.push(('-', '-'));
                                    start
                                }
                                Some(&end) => {
                                    chars.next();
                                    end
                                }
                            }
                        } else {
                            start
                        };
                        if end < start {
                            return Err(error("reversed range in [...]"));
                        }
                        ranges.push((start, end));
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Literal(c),
            });
        }
        Ok(Self::Glob(Glob {
            pattern: text.to_owned(),
            tokens,
        }))
    }

    /// Whether `name` is selected.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Glob(glob) => {
                let name: Vec<char> = name.chars().collect();
                glob_match(&glob.tokens, &name)
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Glob(glob) => f.write_str(&glob.pattern),
        }
    }
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(literal) => *literal == c,
        Token::One => true,
        // `*` is handled by the backtracking loop, never matched as one character.
        Token::Any => false,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(low, high)| (low..=high).contains(&c)) != *negated
        }
    }
}

/// Iterative wildcard matching with one backtrack point (the last `*`): linear in
/// practice, and at worst `pattern x name`, both at most a few dozen characters.
fn glob_match(tokens: &[Token], name: &[char]) -> bool {
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Any) => {
                star = Some((t, n));
                t += 1;
            }
            Some(token) if token_matches(token, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry.
                Some((star_t, star_n)) => {
                    t = star_t + 1;
                    n = star_n + 1;
                    star = Some((star_t, star_n + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|token| *token == Token::Any)
}

/// Every `--iface` entry, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    selectors: Vec<Selector>,
}

impl Selection {
    /// Parses every entry (already split at commas by the command line).
    ///
    /// # Errors
    /// The first malformed pattern.
    pub fn parse(entries: &[String]) -> Result<Self, PatternError> {
        Ok(Self {
            selectors: entries
                .iter()
                .map(|entry| Selector::parse(entry))
                .collect::<Result<_, _>>()?,
        })
    }

    /// A selection of exactly these names.
    #[must_use]
    pub fn exact(names: impl IntoIterator<Item = String>) -> Self {
        Self {
            selectors: names.into_iter().map(Selector::Exact).collect(),
        }
    }

    /// The entries, in the order given.
    #[must_use]
    pub fn selectors(&self) -> &[Selector] {
        &self.selectors
    }

    /// Nothing was asked for (portmon then takes every up, non-loopback interface).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.selectors.is_empty()
    }

    /// Whether any entry is a glob (interfaces may appear that need a fresh load).
    #[must_use]
    pub fn has_globs(&self) -> bool {
        self.selectors
            .iter()
            .any(|selector| matches!(selector, Selector::Glob(_)))
    }

    /// Whether `name` is selected by any entry.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        self.selectors.iter().any(|selector| selector.matches(name))
    }
}

#[cfg(test)]
#[expect(clippy::expect_used, reason = "tests panic with what they expected")]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        // (case, pattern, name, expected)
        let cases: &[(&str, &str, &str, bool)] = &[
            ("exact name", "eth0", "eth0", true),
            ("exact is not a prefix", "eth0", "eth01", false),
            ("star suffix", "eth*", "eth0", true),
            ("star matches empty", "eth*", "eth", true),
            ("star suffix miss", "eth*", "veth0", false),
            ("star prefix", "*0", "veth0", true),
            ("star middle", "v*h0", "veth0", true),
            ("two stars backtrack", "*e*0", "veth10", true),
            ("two stars miss", "*x*0", "veth10", false),
            ("star only", "*", "anything", true),
            ("question one", "eth?", "eth1", true),
            ("question not zero", "eth?", "eth", false),
            ("question not two", "eth?", "eth12", false),
            ("class member", "eth[01]", "eth1", true),
            ("class non-member", "eth[01]", "eth2", false),
            ("range", "pm[a-c]9", "pmb9", true),
            ("range miss", "pm[a-c]9", "pmd9", false),
            ("negated class", "[!l]*", "eth0", true),
            ("negated class miss", "[!l]*", "lo", false),
            ("caret negation", "[^l]*", "lo", false),
            ("bracket first is a member", "a[]]b", "a]b", true),
            ("trailing dash is a member", "a[x-]", "a-", true),
            ("dash range and member", "a[x-]", "ax", true),
            ("star then class", "pmh*[0-9]", "pmh12", true),
            ("star then class miss", "pmh*[0-9]", "pmh1x", false),
            ("dots are literal", "br.1", "br.1", true),
            ("dots are literal miss", "br.1", "brx1", false),
        ];
        for &(case, pattern, name, expected) in cases {
            let selector = Selector::parse(pattern)
                .unwrap_or_else(|error| panic!("case {case}: {pattern:?} parses, got {error}"));
            assert_eq!(
                selector.matches(name),
                expected,
                "case {case}: {pattern:?} against {name:?}"
            );
        }
    }

    #[test]
    fn exact_names_and_globs_are_told_apart() {
        assert_eq!(Selector::parse("eth0"), Ok(Selector::Exact("eth0".into())));
        assert!(
            matches!(Selector::parse("eth*"), Ok(Selector::Glob(glob)) if glob.pattern() == "eth*"),
            "eth* is a glob"
        );
        let selection =
            Selection::parse(&["eth0".into(), "veth*".into()]).expect("both entries parse");
        assert!(selection.has_globs(), "veth* is a glob");
        assert!(selection.matches("veth9") && selection.matches("eth0"));
        assert!(!selection.matches("eth1"), "eth0 is exact");
        let exact = Selection::parse(&["eth0".into()]).expect("a name parses");
        assert!(!exact.has_globs(), "a plain name is no glob");
    }

    #[test]
    fn malformed_patterns_are_refused_with_the_syntax() {
        for (case, pattern, problem) in [
            ("unclosed", "eth[0", "unclosed ["),
            ("unclosed empty", "eth[", "unclosed ["),
            ("reversed", "eth[9-0]", "reversed range"),
        ] {
            let text = Selector::parse(pattern)
                .expect_err("a malformed pattern")
                .to_string();
            assert!(
                text.contains(problem) && text.contains(pattern) && text.contains("[a-z]"),
                "case {case}: expected {problem:?}, the pattern and the syntax in {text:?}"
            );
        }
    }
}
