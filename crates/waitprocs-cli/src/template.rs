//! Command templates of `waitprocs run`, filled from the items of an argument
//! list, and the quoting that keeps each item one argument.
//!
//! | placeholder | replaced by | for `dir/file.tar.gz` |
//! |---|---|---|
//! | `{}` | the item | `dir/file.tar.gz` |
//! | `{.}` | the item without its last extension | `dir/file.tar` |
//! | `{/}` | the item's last path component | `file.tar.gz` |
//! | `{//}` | the item's directory (`.` if it has none) | `dir` |
//! | `{/.}` | the last component without its extension | `file.tar` |
//! | `{#}` | the job number, from 1 | `1` |
//!
//! Any other text, braces included, is copied as it is. A template with no
//! placeholder gets ` {}` appended, so the item becomes the last argument.

/// A placeholder of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// `{}`: the item.
    Item,
    /// `{.}`: the item without its last extension.
    NoExtension,
    /// `{/}`: the last path component.
    Basename,
    /// `{//}`: the directory part.
    Dirname,
    /// `{/.}`: the last path component without its extension.
    BasenameNoExtension,
    /// `{#}`: the job number.
    JobNumber,
}

/// The placeholders by their text, longest first, so that `{//}` is not read
/// as `{/}` followed by text.
const PLACEHOLDERS: [(&[u8], Placeholder); 6] = [
    (b"{//}", Placeholder::Dirname),
    (b"{/.}", Placeholder::BasenameNoExtension),
    (b"{/}", Placeholder::Basename),
    (b"{.}", Placeholder::NoExtension),
    (b"{#}", Placeholder::JobNumber),
    (b"{}", Placeholder::Item),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Slot(Placeholder),
}

/// One string with placeholders: a shell command, or one argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pieces: Vec<Piece>,
}

impl Pattern {
    /// Splits `text` into literal text and placeholders.
    pub fn parse(text: &[u8]) -> Self {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(&first) = rest.first() {
            let found = (first == b'{')
                .then(|| {
                    PLACEHOLDERS
                        .iter()
                        .find(|(token, _)| rest.starts_with(token))
                })
                .flatten();
            match found {
                Some(&(token, placeholder)) => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot(placeholder));
                    rest = &rest[token.len()..];
                }
                None => {
                    literal.push(first);
                    rest = &rest[1..];
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Self { pieces }
    }

    /// Returns the placeholders of the pattern, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Slot(placeholder) => Some(*placeholder),
            Piece::Text(_) => None,
        })
    }

    /// Writes the pattern with each placeholder replaced, passing every
    /// replacement through `escape` first.
    fn expand(&self, item: &[u8], job: usize, escape: fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text),
                Piece::Slot(placeholder) => {
                    out.extend_from_slice(&escape(&replacement(*placeholder, item, job)))
                }
            }
        }
        out
    }

    /// Returns the pattern filled with `item` and `job`, with no quoting. This
    /// is for text that no shell reads, such as the `--tag-string` prefix.
    pub fn fill_plain(&self, item: &[u8], job: usize) -> Vec<u8> {
        self.expand(item, job, <[u8]>::to_vec)
    }
}

/// A command template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Template {
    /// A shell command, run with `sh -c`; each replacement is shell-quoted.
    Shell(Pattern),
    /// A program and its arguments, run without a shell; each replacement
    /// becomes part of one argument, whatever characters it has.
    Argv(Vec<Pattern>),
}

/// A template filled with one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filled {
    /// A shell command.
    Shell(Vec<u8>),
    /// A program and its arguments; never empty.
    Argv(Vec<Vec<u8>>),
}

impl Template {
    /// Parses a shell command template. Without a placeholder, ` {}` is appended.
    pub fn shell(text: &[u8]) -> Self {
        let mut pattern = Pattern::parse(text);
        if pattern.placeholders().next().is_none() {
            pattern.pieces.push(Piece::Text(b" ".to_vec()));
            pattern.pieces.push(Piece::Slot(Placeholder::Item));
        }
        Self::Shell(pattern)
    }

    /// Parses a program and its arguments. Without a placeholder in any of
    /// them, `{}` is appended as one more argument. `args` must not be empty.
    pub fn argv<A: AsRef<[u8]>>(args: &[A]) -> Self {
        let mut patterns: Vec<Pattern> = args
            .iter()
            .map(|arg| Pattern::parse(arg.as_ref()))
            .collect();
        if patterns
            .iter()
            .all(|pattern| pattern.placeholders().next().is_none())
        {
            patterns.push(Pattern {
                pieces: vec![Piece::Slot(Placeholder::Item)],
            });
        }
        Self::Argv(patterns)
    }

    /// Fills the template with `item` for job number `job`.
    pub fn fill(&self, item: &[u8], job: usize) -> Filled {
        match self {
            Self::Shell(pattern) => Filled::Shell(pattern.expand(item, job, shell_quote)),
            Self::Argv(patterns) => Filled::Argv(
                patterns
                    .iter()
                    .map(|pattern| pattern.fill_plain(item, job))
                    .collect(),
            ),
        }
    }
}

/// Returns the text a placeholder stands for.
fn replacement(placeholder: Placeholder, item: &[u8], job: usize) -> Vec<u8> {
    match placeholder {
        Placeholder::Item => item.to_vec(),
        Placeholder::NoExtension => {
            let (directory, base) = split_last_component(item);
            let mut out = item[..directory].to_vec();
            out.extend_from_slice(strip_extension(base));
            out
        }
        Placeholder::Basename => split_last_component(item).1.to_vec(),
        Placeholder::BasenameNoExtension => strip_extension(split_last_component(item).1).to_vec(),
        Placeholder::Dirname => match item.iter().rposition(|&byte| byte == b'/') {
            None => b".".to_vec(),
            Some(0) => b"/".to_vec(),
            Some(slash) => item[..slash].to_vec(),
        },
        Placeholder::JobNumber => job.to_string().into_bytes(),
    }
}

/// Splits a path into the length of its directory part (with the slash) and
/// its last component.
fn split_last_component(path: &[u8]) -> (usize, &[u8]) {
    match path.iter().rposition(|&byte| byte == b'/') {
        Some(slash) => (slash + 1, &path[slash + 1..]),
        None => (0, path),
    }
}

/// Removes the last `.ext` of a file name. A leading dot, as in `.bashrc`,
/// starts no extension.
fn strip_extension(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&byte| byte == b'.') {
        Some(dot) if dot > 0 => &name[..dot],
        _ => name,
    }
}

/// Quotes bytes for a POSIX shell so that it reads them back as one word with
/// no expansion: inside single quotes, where only `'` itself needs care.
pub fn shell_quote(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.push(b'\'');
    for &byte in bytes {
        if byte == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(byte);
        }
    }
    out.push(b'\'');
    out
}

/// Formats a program and its arguments for display, quoting each argument
/// that a POSIX shell would not read back as the same single word.
pub fn display_argv<A: AsRef<[u8]>>(args: &[A]) -> String {
    args.iter()
        .map(|arg| display_word(&String::from_utf8_lossy(arg.as_ref())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn display_word(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(template: &str, item: &str, job: usize) -> String {
        match Template::shell(template.as_bytes()).fill(item.as_bytes(), job) {
            Filled::Shell(command) => String::from_utf8(command).unwrap(),
            Filled::Argv(_) => unreachable!(),
        }
    }

    fn argv(template: &[&str], item: &str) -> Vec<String> {
        match Template::argv(template).fill(item.as_bytes(), 7) {
            Filled::Argv(args) => args
                .into_iter()
                .map(|arg| String::from_utf8(arg).unwrap())
                .collect(),
            Filled::Shell(_) => unreachable!(),
        }
    }

    #[test]
    fn shell_quotes_item() {
        assert_eq!(shell("gzip -k {}", "a b", 1), "gzip -k 'a b'");
        assert_eq!(shell("echo {}", "it's", 1), r"echo 'it'\''s'");
        assert_eq!(shell("echo {}", "", 1), "echo ''");
        assert_eq!(shell("echo {}", "$(id); x", 1), "echo '$(id); x'");
    }

    #[test]
    fn shell_appends_missing_placeholder() {
        assert_eq!(shell("ls -l", "a b", 1), "ls -l 'a b'");
    }

    #[test]
    fn shell_job_number_unquoted() {
        assert_eq!(shell("echo {#} {}", "x", 12), "echo '12' 'x'");
    }

    #[test]
    fn argv_item_is_one_argument() {
        let item = "a b; $(rm -rf /) 'q' \"d\"";
        assert_eq!(
            argv(&["printf", "%s\\n", "{}"], item),
            ["printf", "%s\\n", item]
        );
    }

    #[test]
    fn argv_placeholder_inside_argument() {
        assert_eq!(
            argv(&["cp", "{}", "{}.bak"], "a b"),
            ["cp", "a b", "a b.bak"]
        );
        assert_eq!(argv(&["echo", "--job={#}"], "x"), ["echo", "--job=7"]);
    }

    #[test]
    fn argv_appends_missing_placeholder() {
        assert_eq!(argv(&["echo", "-n"], "a b"), ["echo", "-n", "a b"]);
    }

    #[test]
    fn path_placeholders() {
        let cases = [
            (
                "dir/file.tar.gz",
                "dir/file.tar",
                "file.tar.gz",
                "dir",
                "file.tar",
            ),
            ("file", "file", "file", ".", "file"),
            ("/file.txt", "/file", "file.txt", "/", "file"),
            ("a.d/.bashrc", "a.d/.bashrc", ".bashrc", "a.d", ".bashrc"),
            ("a.d/b", "a.d/b", "b", "a.d", "b"),
        ];
        for (item, no_ext, base, dir, base_no_ext) in cases {
            let filled = argv(&["x", "{.}", "{/}", "{//}", "{/.}"], item);
            assert_eq!(filled, ["x", no_ext, base, dir, base_no_ext], "{item}");
        }
    }

    #[test]
    fn unknown_braces_stay() {
        assert_eq!(
            shell("echo ${HOME} {x} { } {}", "i", 1),
            "echo ${HOME} {x} { } 'i'"
        );
    }

    #[test]
    fn longest_placeholder_wins() {
        let pattern = Pattern::parse(b"{//}{/.}{/}");
        let found: Vec<_> = pattern.placeholders().collect();
        assert_eq!(
            found,
            [
                Placeholder::Dirname,
                Placeholder::BasenameNoExtension,
                Placeholder::Basename
            ]
        );
    }

    #[test]
    fn plain_fill_does_not_quote() {
        let pattern = Pattern::parse(b"[{#}] {}");
        assert_eq!(pattern.fill_plain(b"a b", 3), b"[3] a b");
    }

    #[test]
    fn display_quotes_arguments() {
        let argv = ["printf", "%s\\n", "a b", "it's", ""];
        assert_eq!(display_argv(&argv), r"printf '%s\n' 'a b' 'it'\''s' ''");
    }
}
