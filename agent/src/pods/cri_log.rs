//! Container logs in the CRI format kubelet and `kubectl logs` read: one record per line,
//! `<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <text>`, where P marks a piece of
//! a longer line and F ends a line. Files rotate by size, keeping a fixed number.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::clock::{epoch_nanos, rfc3339};

/// Longest text of one record; a longer line is split into P records (containerd's 16 KiB).
pub const MAX_RECORD_TEXT: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{operation} {path}: {source}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log line {line}: {message}")]
    Malformed { line: usize, message: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Writes one container's log, rotating `path` → `path.1` … when it would pass `max_bytes`.
pub struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    /// Files kept, the live one included.
    max_files: usize,
    file: File,
    size: u64,
    /// Text of each stream's unfinished line.
    pending: [Vec<u8>; 2],
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_owned();
    move |source| LogError::Io {
        operation,
        path,
        source,
    }
}

fn open(path: &Path) -> Result<(File, u64), LogError> {
    let file = (OpenOptions::new().create(true).append(true).open(path))
        .map_err(io_err("opening", path))?;
    let size = file
        .metadata()
        .map_err(io_err("reading size of", path))?
        .len();
    Ok((file, size))
}

fn rotated(path: &Path, index: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

impl LogWriter {
    pub fn open(path: &Path, max_bytes: u64, max_files: usize) -> Result<Self, LogError> {
        let (file, size) = open(path)?;
        Ok(LogWriter {
            path: path.to_owned(),
            max_bytes,
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Records what a container wrote: complete lines as F records, long lines cut into P
    /// records; an unfinished line waits for its end (or `finish`).
    pub fn write(&mut self, stream: Stream, bytes: &[u8], now: SystemTime) -> Result<(), LogError> {
        let index = stream as usize;
        let mut pending = std::mem::take(&mut self.pending[index]);
        pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = pending[start..start + offset].to_vec();
            self.emit_line(stream, &line, now)?;
            start += offset + 1;
        }
        let mut rest = pending.split_off(start);
        while rest.len() > MAX_RECORD_TEXT {
            let tail = rest.split_off(MAX_RECORD_TEXT);
            self.record(stream, true, &rest, now)?;
            rest = tail;
        }
        self.pending[index] = rest;
        Ok(())
    }

    /// Ends unfinished lines (the container exited).
    pub fn finish(&mut self, now: SystemTime) -> Result<(), LogError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.pending[stream as usize]);
            if !rest.is_empty() {
                self.record(stream, false, &rest, now)?;
            }
        }
        Ok(())
    }

    fn emit_line(&mut self, stream: Stream, line: &[u8], now: SystemTime) -> Result<(), LogError> {
        let mut chunks = line.chunks(MAX_RECORD_TEXT).peekable();
        if chunks.peek().is_none() {
            return self.record(stream, false, b"", now);
        }
        while let Some(chunk) = chunks.next() {
            self.record(stream, chunks.peek().is_some(), chunk, now)?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        stream: Stream,
        partial: bool,
        text: &[u8],
        now: SystemTime,
    ) -> Result<(), LogError> {
        let mut line = format!(
            "{} {} {} ",
            rfc3339(epoch_nanos(now), 9),
            stream.name(),
            if partial { "P" } else { "F" }
        )
        .into_bytes();
        line.extend_from_slice(text);
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file
            .write_all(&line)
            .map_err(io_err("writing", &self.path))?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let oldest = rotated(&self.path, self.max_files - 1);
        match std::fs::remove_file(&oldest) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_err("removing", &oldest)(err));
            }
            _ => {}
        }
        for index in (1..self.max_files - 1).rev() {
            let from = rotated(&self.path, index);
            if from.exists() {
                let to = rotated(&self.path, index + 1);
                std::fs::rename(&from, &to).map_err(io_err("rotating", &from))?;
            }
        }
        if self.max_files > 1 {
            let first = rotated(&self.path, 1);
            std::fs::rename(&self.path, &first).map_err(io_err("rotating", &self.path))?;
        } else {
            std::fs::remove_file(&self.path).map_err(io_err("removing", &self.path))?;
        }
        (self.file, self.size) = open(&self.path)?;
        Ok(())
    }
}

/// One log line as written: its time, stream and text, with P pieces joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: Stream,
    pub text: String,
}

/// Reads a CRI log (oldest rotated file first when `with_rotated`), joining partial records.
pub fn read(path: &Path, with_rotated: bool) -> Result<Vec<LogLine>, LogError> {
    let mut files = Vec::new();
    if with_rotated {
        let mut index = 1;
        while rotated(path, index).exists() {
            files.push(rotated(path, index));
            index += 1;
        }
        files.reverse();
    }
    files.push(path.to_owned());
    let mut text = String::new();
    for file in files {
        text += &std::fs::read_to_string(&file).map_err(io_err("reading", &file))?;
    }
    parse(&text)
}

/// Parses CRI log text; a malformed line is an error naming it.
pub fn parse(text: &str) -> Result<Vec<LogLine>, LogError> {
    let mut lines = Vec::new();
    let mut partial: [Option<(String, String)>; 2] = [None, None];
    for (number, raw) in text.lines().enumerate() {
        let fail = |message: &str| LogError::Malformed {
            line: number + 1,
            message: message.to_owned(),
        };
        let mut fields = raw.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(fail("needs a time, a stream and a tag"));
        };
        let text = fields.next().unwrap_or_default();
        let stream = match stream {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            _ => return Err(fail("stream is not stdout or stderr")),
        };
        let slot = &mut partial[stream as usize];
        let (first_time, mut joined) = slot
            .take()
            .unwrap_or_else(|| (time.to_owned(), String::new()));
        joined.push_str(text);
        match tag {
            "P" => *slot = Some((first_time, joined)),
            "F" => lines.push(LogLine {
                time: first_time,
                stream,
                text: joined,
            }),
            _ => return Err(fail("tag is not F or P")),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_796_054_400 + secs)
    }

    #[test]
    fn lines_records_and_partials_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = LogWriter::open(&path, 1 << 20, 3).unwrap();
        log.write(Stream::Stdout, b"hello\nwor", at(0)).unwrap();
        log.write(Stream::Stderr, b"oops\n", at(1)).unwrap();
        log.write(Stream::Stdout, b"ld\n\n", at(2)).unwrap();
        let long = vec![b'x'; MAX_RECORD_TEXT + 10];
        log.write(Stream::Stdout, &long, at(3)).unwrap();
        log.write(Stream::Stdout, b"tail", at(4)).unwrap();
        log.finish(at(5)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap();
        assert_eq!(first, "2026-11-30T16:00:00.000000000Z stdout F hello");
        assert!(
            text.contains(" stdout P xxx"),
            "a long line is cut into P records"
        );
        let lines = read(&path, true).unwrap();
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        let joined_long = format!("{}tail", "x".repeat(MAX_RECORD_TEXT + 10));
        assert_eq!(texts, ["hello", "oops", "world", "", joined_long.as_str()]);
        assert_eq!(lines[1].stream, Stream::Stderr);
        assert_eq!(
            lines[4].time, "2026-11-30T16:00:03.000000000Z",
            "time of the first piece"
        );
    }

    #[test]
    fn rotation_keeps_the_newest_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let mut log = LogWriter::open(&path, 200, 3).unwrap();
        for i in 0..20 {
            log.write(Stream::Stdout, format!("line {i:02}\n").as_bytes(), at(i))
                .unwrap();
        }
        assert!(rotated(&path, 2).exists() && !rotated(&path, 3).exists());
        for file in [path.clone(), rotated(&path, 1)] {
            assert!(std::fs::metadata(&file).unwrap().len() <= 200);
        }
        let lines = read(&path, true).unwrap();
        assert!(lines.len() < 20, "the oldest were rotated away");
        let numbers: Vec<u32> = lines.iter().map(|l| l.text[5..].parse().unwrap()).collect();
        assert_eq!(*numbers.last().unwrap(), 19);
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
        assert_eq!(read(&path, false).unwrap().last().unwrap().text, "line 19");
    }

    #[test]
    fn malformed_log_lines_are_named() {
        let err = parse("2026-11-30T16:00:00Z stdout F ok\n2026 stdin F x\n").unwrap_err();
        assert!(
            err.to_string().contains("log line 2") && err.to_string().contains("stdout or stderr"),
            "{err}"
        );
        assert!(
            parse("2026 stdout X y")
                .unwrap_err()
                .to_string()
                .contains("F or P")
        );
        assert!(parse("nothing").is_err());
    }
}
