//! What a subscription wants: documents (collections by name or glob, and a key prefix) and
//! stream changes (streams by name or glob).

/// A change-feed filter. The default matches every document, no stream, and delivers no
/// values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Collection names or globs (`*` any run of characters, `?` one character); empty
    /// means every collection, unless `streams` names some (then no document is wanted).
    pub collections: Vec<String>,
    /// Stream names or globs whose appends, trims, deletes and retention changes are wanted;
    /// empty means none.
    pub streams: Vec<String>,
    /// Only keys starting with this prefix (empty: every key).
    pub prefix: String,
    /// Deliver each written document's value (canonical JSON) with its change.
    pub values: bool,
}

impl Filter {
    /// Matches every document, without values.
    pub fn all() -> Self {
        Filter::default()
    }

    /// Adds a collection name or glob.
    pub fn collection(mut self, glob: impl Into<String>) -> Self {
        self.collections.push(glob.into());
        self
    }

    /// Adds a stream name or glob.
    pub fn stream(mut self, glob: impl Into<String>) -> Self {
        self.streams.push(glob.into());
        self
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Deliver values too.
    pub fn with_values(mut self, values: bool) -> Self {
        self.values = values;
        self
    }

    /// Whether some document of `collection` may match (the key prefix aside).
    pub fn may_match_collection(&self, collection: &str) -> bool {
        if self.collections.is_empty() {
            return self.streams.is_empty();
        }
        self.collections.iter().any(|g| glob_match(g, collection))
    }

    /// Whether changes of `stream` match.
    pub fn matches_stream(&self, stream: &str) -> bool {
        self.streams.iter().any(|g| glob_match(g, stream))
    }

    /// Whether something that `touched` names may match (see [`crate::Db::touched`]).
    pub fn may_concern(&self, touched: &Touched) -> bool {
        touched
            .collections
            .iter()
            .any(|c| self.may_match_collection(c))
            || touched.streams.iter().any(|s| self.matches_stream(s))
    }

    /// Whether a document of `collection` under `key` matches.
    pub fn matches(&self, collection: &str, key: &str) -> bool {
        key.starts_with(&self.prefix) && self.may_match_collection(collection)
    }
}

/// The distinct collections and streams some commits wrote (see [`crate::Db::touched`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// Collections with a document written or deleted.
    pub collections: Vec<std::sync::Arc<str>>,
    /// Streams appended to, trimmed, deleted or configured.
    pub streams: Vec<std::sync::Arc<str>>,
}

/// Matches `name` against a glob of `*` (any run of characters) and `?` (one character).
pub fn glob_match(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match g.get(gi) {
            Some(b'*') => {
                star = Some((gi, ni));
                gi += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == n.get(ni) => {
                gi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g.get(gi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_prefixes_and_single_characters() {
        assert!(glob_match("players", "players"));
        assert!(!glob_match("players", "players2"));
        assert!(glob_match("play*", "players"));
        assert!(glob_match("*", ""));
        assert!(glob_match("p?ayers", "players"));
        assert!(!glob_match("p?ayers", "pyers"));
        assert!(glob_match("*.log", "chat.log"));
        assert!(!glob_match("*.log", "chat.logs"));
        let f = Filter::all().collection("chat*").prefix("room1/");
        assert!(f.matches("chat", "room1/a"));
        assert!(!f.matches("chat", "room2/a"));
        assert!(!f.matches("players", "room1/a"));
        assert!(!f.matches_stream("chat"));
    }

    #[test]
    fn naming_streams_alone_wants_no_documents_and_naming_both_wants_both() {
        let s = Filter::all().stream("chat.*");
        assert!(s.matches_stream("chat.room1"));
        assert!(!s.matches_stream("audit"));
        assert!(!s.may_match_collection("players"));
        let both = Filter::all().stream("chat.*").collection("players");
        assert!(both.may_match_collection("players") && both.matches_stream("chat.1"));
        assert!(Filter::all().may_match_collection("players"));
        let touched = Touched {
            collections: vec!["players".into()],
            streams: vec!["chat.room1".into()],
        };
        assert!(s.may_concern(&touched));
        assert!(!Filter::all().stream("audit").may_concern(&touched));
        assert!(Filter::all().may_concern(&touched));
    }
}
