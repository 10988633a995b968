//! The pipes that carry a job's standard output and error, and the buffer that
//! passes their bytes on as whole lines.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

/// Maximum length of a line passed on whole. A longer one is passed on in pieces of this
/// size, each ended with a newline, so that memory stays bounded.
pub(crate) const MAX_LINE: usize = 64 * 1024;

/// Output stream of a job that a pipe carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    Stdout,
    Stderr,
}

/// Collects bytes and hands out complete lines, each with its newline.
#[derive(Debug, Default)]
pub(crate) struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Appends `bytes` and writes every complete line to `out`, each preceded
    /// by `tag`. A line that reaches [`MAX_LINE`] without a newline is written
    /// in pieces of that size, each ended with a newline.
    pub(crate) fn push(&mut self, mut bytes: &[u8], tag: &[u8], out: &mut Vec<u8>) {
        while !bytes.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let take = bytes.len().min(room);
            let (chunk, rest) = bytes.split_at(take);
            bytes = rest;
            match chunk.iter().rposition(|&byte| byte == b'\n') {
                Some(last_newline) => {
                    let (lines, tail) = chunk.split_at(last_newline + 1);
                    self.emit_lines(lines, tag, out);
                    self.pending.extend_from_slice(tail);
                }
                None => self.pending.extend_from_slice(chunk),
            }
            if self.pending.len() == MAX_LINE {
                self.finish(tag, out);
            }
        }
    }

    /// Writes what is left, a line without its newline, and adds the newline.
    pub(crate) fn finish(&mut self, tag: &[u8], out: &mut Vec<u8>) {
        if self.pending.is_empty() {
            return;
        }
        out.extend_from_slice(tag);
        out.extend_from_slice(&self.pending);
        out.push(b'\n');
        self.pending.clear();
    }

    /// Writes the pending start of a line, then each complete line of `lines`,
    /// which ends with a newline.
    fn emit_lines(&mut self, lines: &[u8], tag: &[u8], out: &mut Vec<u8>) {
        let mut rest = lines;
        if !self.pending.is_empty() {
            let end = rest
                .iter()
                .position(|&byte| byte == b'\n')
                .map_or(0, |i| i + 1);
            out.extend_from_slice(tag);
            out.extend_from_slice(&self.pending);
            out.extend_from_slice(&rest[..end]);
            self.pending.clear();
            rest = &rest[end..];
        }
        if tag.is_empty() {
            out.extend_from_slice(rest);
            return;
        }
        for line in rest.split_inclusive(|&byte| byte == b'\n') {
            out.extend_from_slice(tag);
            out.extend_from_slice(line);
        }
    }
}

/// Result of one read from a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// Bytes arrived; there may be more.
    Data,
    /// Nothing to read now.
    Empty,
    /// Every writer has closed the pipe.
    Closed,
}

/// The reading end of one of a job's pipes.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Index of the job that writes to the pipe.
    pub(crate) job: usize,
    /// Attempt of the job, from 1.
    pub(crate) attempt: u32,
    pub(crate) kind: StreamKind,
    pipe: File,
    buffer: LineBuffer,
    tag: Rc<[u8]>,
    /// Bytes read so far.
    pub(crate) received: u64,
}

impl Stream {
    /// Wraps a pipe and makes reading it non-blocking.
    ///
    /// # Errors
    ///
    /// The OS error if the pipe cannot be made non-blocking.
    pub(crate) fn new(
        job: usize,
        attempt: u32,
        kind: StreamKind,
        pipe: OwnedFd,
        tag: Rc<[u8]>,
    ) -> io::Result<Self> {
        rustix::io::ioctl_fionbio(&pipe, true)?;
        Ok(Self {
            job,
            attempt,
            kind,
            pipe: File::from(pipe),
            buffer: LineBuffer::default(),
            tag,
            received: 0,
        })
    }

    /// Reads once, up to [`MAX_LINE`] bytes, and writes the complete lines to
    /// `out`. At the end of the stream, a last line without a newline is
    /// written with one.
    pub(crate) fn read_once(&mut self, scratch: &mut [u8], out: &mut Vec<u8>) -> ReadOutcome {
        loop {
            match self.pipe.read(scratch) {
                Ok(0) => {
                    self.buffer.finish(&self.tag, out);
                    return ReadOutcome::Closed;
                }
                Ok(count) => {
                    self.received += count as u64;
                    self.buffer.push(&scratch[..count], &self.tag, out);
                    return ReadOutcome::Data;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return ReadOutcome::Empty
                }
                // A read error on a pipe we own cannot be retried; end the stream.
                Err(_) => {
                    self.buffer.finish(&self.tag, out);
                    return ReadOutcome::Closed;
                }
            }
        }
    }

    /// Writes a line that was left without its newline, and stops reading.
    pub(crate) fn close(mut self, out: &mut Vec<u8>) {
        self.buffer.finish(&self.tag, out);
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_all(chunks: &[&[u8]], tag: &[u8]) -> Vec<u8> {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        for chunk in chunks {
            buffer.push(chunk, tag, &mut out);
        }
        buffer.finish(tag, &mut out);
        out
    }

    #[test]
    fn lines_pass_whole() {
        assert_eq!(push_all(&[b"a\nb", b"c\nd\n"], b""), b"a\nbc\nd\n");
    }

    #[test]
    fn partial_line_waits() {
        let mut buffer = LineBuffer::default();
        let mut out = Vec::new();
        buffer.push(b"abc", b"", &mut out);
        assert!(out.is_empty());
        buffer.push(b"d\n", b"", &mut out);
        assert_eq!(out, b"abcd\n");
    }

    #[test]
    fn tag_starts_each_line() {
        let out = push_all(&[b"one\ntw", b"o\nthree"], b"T\t");
        assert_eq!(out, b"T\tone\nT\ttwo\nT\tthree\n");
    }

    #[test]
    fn last_line_gets_newline() {
        assert_eq!(push_all(&[b"no newline"], b""), b"no newline\n");
    }

    #[test]
    fn empty_input_writes_nothing() {
        assert!(push_all(&[], b"T").is_empty());
    }

    #[test]
    fn long_line_split_in_pieces() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let out = push_all(&[&long, b"\n"], b"");
        let pieces: Vec<usize> = out
            .split_inclusive(|&byte| byte == b'\n')
            .map(<[u8]>::len)
            .collect();
        assert_eq!(pieces, [MAX_LINE + 1, MAX_LINE + 1, 11]);
    }

    #[test]
    fn long_line_across_pushes() {
        let half = vec![b'y'; MAX_LINE / 2 + 1];
        let out = push_all(&[&half, &half, b"z\n"], b"");
        let pieces: Vec<usize> = out
            .split_inclusive(|&byte| byte == b'\n')
            .map(<[u8]>::len)
            .collect();
        assert_eq!(pieces, [MAX_LINE + 1, 4]);
    }
}
