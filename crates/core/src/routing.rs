//! Which provider serves a model. Routes are exact names or `*` patterns in configured order;
//! aliases rename a model before routing; a provider with no routes of its own serves the models
//! its `/models` endpoint lists.

use std::collections::{BTreeSet, HashMap};

/// A model name, or a pattern where `*` stands for any run of characters (`gpt-4o*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPattern(String);

impl ModelPattern {
    pub fn new(text: &str) -> ModelPattern {
        ModelPattern(text.trim().to_owned())
    }

    pub fn is_exact(&self) -> bool {
        !self.0.contains('*')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn matches(&self, model: &str) -> bool {
        glob(self.0.as_bytes(), model.as_bytes())
    }
}

/// `*`-only glob matching, iterative with backtracking to the last star.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

/// The models a key or project may use: names or `*` patterns. Empty: every model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelAllowList {
    patterns: Vec<ModelPattern>,
    /// A stored list that could not be read allows nothing: never more than intended.
    deny_all: bool,
}

impl ModelAllowList {
    pub fn new(patterns: &[String]) -> ModelAllowList {
        let patterns = patterns
            .iter()
            .map(|p| ModelPattern::new(p))
            .filter(|p| !p.as_str().is_empty())
            .collect();
        ModelAllowList {
            patterns,
            deny_all: false,
        }
    }

    pub fn allows(&self, model: &str) -> bool {
        !self.deny_all
            && (self.patterns.is_empty() || self.patterns.iter().any(|p| p.matches(model)))
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && !self.deny_all
    }

    /// The names and patterns, as given.
    pub fn patterns(&self) -> Vec<String> {
        self.patterns
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect()
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.patterns.iter().map(|p| p.as_str()).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into())
    }

    pub fn from_json(text: &str) -> ModelAllowList {
        serde_json::from_str::<Vec<String>>(text)
            .map(|list| ModelAllowList::new(&list))
            .unwrap_or(ModelAllowList {
                patterns: Vec::new(),
                deny_all: true,
            })
    }
}

impl serde::Serialize for ModelAllowList {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.patterns.iter().map(|p| p.as_str()))
    }
}

impl std::fmt::Display for ModelAllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.deny_all {
            return f.write_str("(unreadable: no model allowed)");
        }
        if self.patterns.is_empty() {
            return f.write_str("any");
        }
        f.write_str(
            &self
                .patterns
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
    }
}

/// Where a request goes: the provider's index and the model name to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub provider: usize,
    pub model: String,
}

/// The routing table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    aliases: HashMap<String, String>,
    routes: Vec<(ModelPattern, usize)>,
    /// Per provider index: the models it listed, for providers without routes.
    discovered: Vec<BTreeSet<String>>,
}

impl RouteTable {
    pub fn new(
        providers: usize,
        routes: Vec<(ModelPattern, usize)>,
        aliases: HashMap<String, String>,
    ) -> RouteTable {
        RouteTable {
            aliases,
            routes,
            discovered: vec![BTreeSet::new(); providers],
        }
    }

    /// Whether `provider` has routes of its own (else it serves what it lists).
    pub fn has_routes(&self, provider: usize) -> bool {
        self.routes.iter().any(|(_, p)| *p == provider)
    }

    /// Replaces the models a provider listed.
    pub fn set_discovered(&mut self, provider: usize, models: BTreeSet<String>) {
        if let Some(slot) = self.discovered.get_mut(provider) {
            *slot = models;
        }
    }

    /// Routes `requested`: alias first, then exact routes, then patterns in order, then the
    /// models providers listed.
    pub fn resolve(&self, requested: &str) -> Option<Resolved> {
        let model = self
            .aliases
            .get(requested)
            .map(String::as_str)
            .unwrap_or(requested);
        let found = |provider: usize| Resolved {
            provider,
            model: model.to_owned(),
        };
        if let Some((_, p)) = self
            .routes
            .iter()
            .find(|(pat, _)| pat.is_exact() && pat.as_str() == model)
        {
            return Some(found(*p));
        }
        if let Some((_, p)) = self
            .routes
            .iter()
            .find(|(pat, _)| !pat.is_exact() && pat.matches(model))
        {
            return Some(found(*p));
        }
        self.discovered
            .iter()
            .position(|set| set.contains(model))
            .map(found)
    }

    /// Every model that can be named exactly, with its provider: exact routes, aliases and
    /// listed models, without duplicates, in a stable order.
    pub fn listable(&self) -> Vec<(String, usize)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut push = |name: &str, provider: usize| {
            if seen.insert(name.to_owned()) {
                out.push((name.to_owned(), provider));
            }
        };
        for (pattern, provider) in &self.routes {
            if pattern.is_exact() {
                push(pattern.as_str(), *provider);
            }
        }
        for (provider, models) in self.discovered.iter().enumerate() {
            for model in models {
                push(model, provider);
            }
        }
        let mut aliases: Vec<_> = self.aliases.iter().collect();
        aliases.sort();
        for (alias, target) in aliases {
            if let Some(resolved) = self.resolve(target) {
                push(alias, resolved.provider);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        let p = ModelPattern::new("gpt-4o*");
        assert!(p.matches("gpt-4o") && p.matches("gpt-4o-mini") && !p.matches("gpt-4"));
        assert!(ModelPattern::new("*").matches("anything"));
        assert!(ModelPattern::new("llama-*-instruct").matches("llama-3.1-8b-instruct"));
        assert!(!ModelPattern::new("llama-*-instruct").matches("llama-3.1-8b"));
        assert!(ModelPattern::new("a*b*c").matches("aXbYbZc"));
    }

    #[test]
    fn model_allow_lists_match_patterns_and_fail_closed() {
        let list = ModelAllowList::new(&["gpt-4o*".into(), "text-embedding-3-small".into()]);
        assert!(list.allows("gpt-4o-mini") && list.allows("text-embedding-3-small"));
        assert!(!list.allows("o3") && !list.allows("gpt-4.1"));
        assert!(ModelAllowList::default().allows("anything"));
        assert_eq!(ModelAllowList::from_json(&list.to_json()), list);
        assert!(!ModelAllowList::from_json("{broken").allows("gpt-4o"));
        assert_eq!(list.to_string(), "gpt-4o*,text-embedding-3-small");
    }

    #[test]
    fn exact_beats_pattern_beats_discovery_and_aliases_rename() {
        let mut table = RouteTable::new(
            3,
            vec![
                (ModelPattern::new("gpt-*"), 0),
                (ModelPattern::new("gpt-4o-mini"), 1),
            ],
            HashMap::from([("fast".to_owned(), "gpt-4o-mini".to_owned())]),
        );
        table.set_discovered(
            2,
            BTreeSet::from(["llama3".to_owned(), "gpt-4o".to_owned()]),
        );
        assert_eq!(
            table.resolve("gpt-4o-mini"),
            Some(Resolved {
                provider: 1,
                model: "gpt-4o-mini".into()
            })
        );
        assert_eq!(
            table.resolve("gpt-4o").map(|r| r.provider),
            Some(0),
            "an explicit pattern beats discovery"
        );
        assert_eq!(table.resolve("llama3").map(|r| r.provider), Some(2));
        assert_eq!(
            table.resolve("fast"),
            Some(Resolved {
                provider: 1,
                model: "gpt-4o-mini".into()
            })
        );
        assert_eq!(table.resolve("mistral"), None);
        assert!(table.has_routes(0) && !table.has_routes(2));
        let names: Vec<String> = table.listable().into_iter().map(|(m, _)| m).collect();
        assert_eq!(names, ["gpt-4o-mini", "gpt-4o", "llama3", "fast"]);
    }
}
