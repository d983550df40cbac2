//! Renaming checkpoint keys both ways, by rules on whole dotted segments.

use super::StateDict;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// A renaming of checkpoint keys between another code's names ("theirs") and a model's
/// ("ours"), made of rules that replace runs of whole dotted segments: the rule
/// `("stages.0", "stage1")` turns `stages.0.2.conv_kxk.conv.weight` into
/// `stage1.2.conv_kxk.conv.weight` and back, but leaves `stages.01.x` alone. Every rule applies,
/// in order, to every place it matches; the way back applies them in reverse order.
///
/// ```
/// use rep_runtime::io::KeyMap;
/// let map = KeyMap::new().rule("stages.0", "stage1").rule("conv_kxk", "rbr_dense");
/// assert_eq!(map.to_ours("stages.0.2.conv_kxk.bn.bias"), "stage1.2.rbr_dense.bn.bias");
/// assert_eq!(map.to_theirs("stage1.2.rbr_dense.bn.bias"), "stages.0.2.conv_kxk.bn.bias");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyMap {
    rules: Vec<(Vec<String>, Vec<String>)>,
}

fn segments(path: &str) -> Vec<String> {
    path.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// `key` with every run of segments equal to `from` replaced by `to`.
fn replace(key: &[String], from: &[String], to: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(key.len());
    let mut i = 0;
    while i < key.len() {
        if !from.is_empty() && key[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(key[i].clone());
            i += 1;
        }
    }
    out
}

impl KeyMap {
    /// No rules: every key maps to itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the rule `theirs ↔ ours` (dotted segment runs, e.g. `"head.fc"` and `"linear"`).
    pub fn rule(mut self, theirs: &str, ours: &str) -> Self {
        self.rules.push((segments(theirs), segments(ours)));
        self
    }

    /// Their key as ours.
    pub fn to_ours(&self, key: &str) -> String {
        let key = self.rules.iter().fold(segments(key), |k, (theirs, ours)| replace(&k, theirs, ours));
        key.join(".")
    }

    /// Our key as theirs.
    pub fn to_theirs(&self, key: &str) -> String {
        let key = self.rules.iter().rev().fold(segments(key), |k, (theirs, ours)| replace(&k, ours, theirs));
        key.join(".")
    }

    /// A checkpoint in their names, renamed to ours. Two keys that would get one name are an
    /// error naming both, and nothing is renamed.
    pub fn import(&self, state: StateDict) -> Result<StateDict> {
        rename(state, |k| self.to_ours(k))
    }

    /// A checkpoint in our names, renamed to theirs (two keys that would get one name are an error).
    pub fn export(&self, state: StateDict) -> Result<StateDict> {
        rename(state, |k| self.to_theirs(k))
    }
}

fn rename(state: StateDict, name: impl Fn(&str) -> String) -> Result<StateDict> {
    fn map_all<T>(entries: BTreeMap<String, T>, name: &impl Fn(&str) -> String) -> Result<BTreeMap<String, T>> {
        let mut out = BTreeMap::new();
        let mut sources: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in entries {
            let renamed = name(&key);
            if let Some(first) = sources.insert(renamed.clone(), key.clone()) {
                return Err(Error::Checkpoint(format!("keys `{first}` and `{key}` would both be renamed `{renamed}`")));
            }
            out.insert(renamed, value);
        }
        Ok(out)
    }
    Ok(StateDict { tensors: map_all(state.tensors, &name)?, counters: map_all(state.counters, &name)? })
}
