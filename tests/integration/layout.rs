//! The README's layout section is the tree: every file under `src/` is covered by an entry
//! (a file, or a directory ending in `/`), and every entry exists. A file moved or added
//! without a line there fails here.

use std::path::{Path, PathBuf};

/// The entries of the README's `## Layout` code block: the paths before the description.
fn layout_entries(readme: &str) -> Vec<String> {
    let section = readme.split("## Layout").nth(1).expect("README has a Layout section");
    let block = section.split("```").nth(1).expect("the Layout section has a code block");
    block
        .lines()
        .filter(|line| !line.starts_with(' ') && !line.trim().is_empty())
        .flat_map(|line| {
            let paths = line.split("  ").next().unwrap_or_default();
            paths.split(", ").map(|p| p.trim().to_owned()).collect::<Vec<_>>()
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// The description of the layout entry `entry`: its line and the indented lines under it.
fn layout_description(readme: &str, entry: &str) -> String {
    let section = readme.split("## Layout").nth(1).expect("README has a Layout section");
    let block = section.split("```").nth(1).expect("the Layout section has a code block");
    let mut lines = block.lines().skip_while(|line| !line.starts_with(entry));
    let first = lines.next().unwrap_or_else(|| panic!("no layout entry {entry}"));
    std::iter::once(first).chain(lines.take_while(|line| line.starts_with(' '))).collect::<Vec<_>>().join(" ")
}

/// `scripts/` and `packaging/` are listed by file name, so a new script gets a word there.
#[test]
fn the_readme_names_every_script_and_packaging_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for dir in ["scripts/", "packaging/"] {
        let description = layout_description(&readme, dir);
        for file in files_under(&root.join(dir)) {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let named = description.split(|c: char| !(c.is_alphanumeric() || "-_.".contains(c))).any(|w| w == name);
            assert!(named, "the README's layout line for {dir} does not name {name}: {description}");
        }
    }
}

#[test]
fn the_readme_layout_matches_the_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let entries = layout_entries(&readme);
    assert!(entries.len() > 10, "no layout entries found: {entries:?}");
    for entry in &entries {
        assert!(root.join(entry).exists(), "the README's layout names {entry}, which does not exist");
    }
    for file in files_under(&root.join("src")) {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let covered = entries.iter().any(|e| *e == relative || (e.ends_with('/') && relative.starts_with(e.as_str())));
        assert!(covered, "{relative} is not in the README's layout section");
    }
}
