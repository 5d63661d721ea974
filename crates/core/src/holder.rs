//! Who a rate limit or a budget applies to: the whole organization, one project, or one key.

use std::fmt;

/// The level a limit is set at. Limits at every level apply at once; the tightest decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Organization,
    Project,
    Key,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Organization => "organization",
            Level::Project => "project",
            Level::Key => "key",
        }
    }

    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "organization" | "org" => Some(Level::Organization),
            "project" => Some(Level::Project),
            "key" => Some(Level::Key),
            _ => None,
        }
    }
}

/// A level and the id of the organization, project or key at it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Holder {
    pub level: Level,
    pub id: String,
}

impl Holder {
    pub fn new(level: Level, id: impl Into<String>) -> Holder {
        Holder {
            level,
            id: id.into(),
        }
    }
}

impl fmt::Display for Holder {
    /// As OpenAI's messages name it: `organization org-…`, `project proj_…`, `API key key_…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.level {
            Level::Organization => write!(f, "organization {}", self.id),
            Level::Project => write!(f, "project {}", self.id),
            Level::Key => write!(f, "API key {}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_read_like_openai_s_messages() {
        assert_eq!(
            Holder::new(Level::Organization, "org-abc").to_string(),
            "organization org-abc"
        );
        assert_eq!(
            Holder::new(Level::Key, "key_x").to_string(),
            "API key key_x"
        );
        for level in [Level::Organization, Level::Project, Level::Key] {
            assert_eq!(Level::parse(level.as_str()), Some(level));
        }
        assert_eq!(Level::parse("team"), None);
    }
}
