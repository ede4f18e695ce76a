//! The class list: class id → name (WordNet id, folder name, CIFAR label name).
//!
//! Ids are positions in the list. With `--classes FILE` the file fixes them (one name per line,
//! id = line index, as BiT's 21,843-line `imagenet21k_wordnet_ids.txt`); a line may carry more
//! after the name (`n01440764 tench`, as `LOC_synset_mapping.txt`): the first token is the name.
//! Without it, ingest derives the list from the input (sorted wnids or folder names), the
//! torchvision `ImageFolder` / TFDS convention.

use crate::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassList {
    names: Vec<String>,
    index: HashMap<String, i64>,
}

impl ClassList {
    /// Builds a list; a duplicate name is an error (it would make two ids for one class).
    pub fn try_from_names(names: Vec<String>) -> std::result::Result<Self, String> {
        let mut index = HashMap::with_capacity(names.len());
        for (id, name) in names.iter().enumerate() {
            let id = i64::try_from(id).map_err(|_| "too many classes".to_string())?;
            if let Some(first) = index.insert(name.clone(), id) {
                return Err(format!("class {name:?} appears twice (ids {first} and {id})"));
            }
        }
        Ok(ClassList { names, index })
    }

    /// Sorted, de-duplicated names (the convention when no class file is given).
    pub fn from_unsorted(names: impl IntoIterator<Item = String>) -> Self {
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort();
        names.dedup();
        Self::try_from_names(names).expect("sorted and de-duplicated names are unique")
    }

    /// Reads a class file: one class per line, first whitespace-separated token = name.
    /// Blank lines are allowed only at the end (a blank line in the middle would shift ids).
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|(line, reason)| Error::BadClassList { path: path.to_path_buf(), line, reason })
    }

    /// Parses class-file text; errors carry the 1-based line number.
    pub fn parse(text: &str) -> std::result::Result<Self, (usize, String)> {
        let lines: Vec<&str> = text.lines().collect();
        let used = lines.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |last| last + 1);
        let mut names = Vec::with_capacity(used);
        for (n, line) in lines[..used].iter().enumerate() {
            match line.split_whitespace().next() {
                Some(name) => names.push(name.to_string()),
                None => return Err((n + 1, "blank line inside the class list (ids are line numbers)".into())),
            }
        }
        if names.is_empty() {
            return Err((1, "the class list is empty".into()));
        }
        Self::try_from_names(names).map_err(|reason| (0, reason))
    }

    pub fn id_of(&self, name: &str) -> Option<i64> {
        self.index.get(name).copied()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Whether `id` is a valid class id of this list.
    pub fn contains_id(&self, id: i64) -> bool {
        usize::try_from(id).is_ok_and(|i| i < self.names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_line_numbers_and_extra_tokens_ignored() {
        let list = ClassList::parse("n01440764 tench\nn01443537 goldfish\n\n").expect("valid");
        assert_eq!(list.id_of("n01443537"), Some(1));
        assert_eq!(list.names(), ["n01440764", "n01443537"]);
    }

    #[test]
    fn blank_line_inside_is_an_error_with_its_line() {
        let err = ClassList::parse("a\n\nb\n").expect_err("blank inside");
        assert_eq!(err.0, 2);
    }

    #[test]
    fn duplicates_are_an_error() {
        assert!(ClassList::parse("a\nb\na\n").is_err());
    }

    #[test]
    fn unsorted_names_are_sorted_and_deduplicated() {
        let list = ClassList::from_unsorted(["b".to_string(), "a".to_string(), "b".to_string()]);
        assert_eq!(list.names(), ["a", "b"]);
        assert!(list.contains_id(1) && !list.contains_id(2) && !list.contains_id(-1));
    }
}
