//! Template filling never panics, and an item never changes the shape of a
//! command. A shell template's replacement reads back, through POSIX
//! single-quote rules, as exactly the item. An argv template keeps its number
//! of arguments and puts the item whole into each argument that is `{}`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waitprocs_cli::template::{shell_quote, Filled, Pattern, Template};

/// Reads one word of POSIX shell made only of single-quoted parts and `\'`,
/// the forms that `shell_quote` writes. Returns `None` for anything else.
fn unquote(word: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = word;
    while let Some((&first, tail)) = rest.split_first() {
        match first {
            b'\'' => {
                let end = tail.iter().position(|&b| b == b'\'')?;
                out.extend_from_slice(&tail[..end]);
                rest = &tail[end + 1..];
            }
            b'\\' => {
                let (&escaped, tail) = tail.split_first()?;
                out.push(escaped);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(out)
}

fuzz_target!(|input: (&[u8], &[u8], Vec<&[u8]>, u16)| {
    let (item, text, args, job) = input;
    let job = usize::from(job) + 1;

    assert_eq!(unquote(&shell_quote(item)).as_deref(), Some(item));

    match Template::shell(b"{}").fill(item, job) {
        Filled::Shell(command) => assert_eq!(unquote(&command).as_deref(), Some(item)),
        Filled::Argv(_) => unreachable!(),
    }

    // Any template: filling must not panic, and a pattern without
    // placeholders fills to itself.
    let pattern = Pattern::parse(text);
    let plain = pattern.fill_plain(item, job);
    if pattern.placeholders().next().is_none() {
        assert_eq!(plain, text);
    }
    let _ = Template::shell(text).fill(item, job);

    if args.is_empty() {
        return;
    }
    let template = Template::argv(&args);
    let has_placeholder = args
        .iter()
        .any(|arg| Pattern::parse(arg).placeholders().next().is_some());
    match template.fill(item, job) {
        Filled::Argv(filled) => {
            let expected = args.len() + usize::from(!has_placeholder);
            assert_eq!(filled.len(), expected);
            for (index, arg) in args.iter().enumerate() {
                if *arg == b"{}" {
                    assert_eq!(filled[index], item);
                }
            }
            if !has_placeholder {
                assert_eq!(filled.last().map(Vec::as_slice), Some(item));
            }
        }
        Filled::Shell(_) => unreachable!(),
    }
});
