//! The `--log-file` writer: appends, and keeps the server going when the file goes away.
//!
//! simplelog drops write errors on the floor, so this writer notes them for the loop, which warns
//! the operator once on stdout (the one place the warning can still be read). At most once a second
//! it also checks that its path still leads to the open file: when the file was removed or rotated
//! away it opens the path anew, and when that fails too (the directory is gone) it says so. It
//! reopens the path at once when asked (SIGUSR1, or SIGHUP headless: `request_reopen`), and at
//! `--log-max-size` it rotates the file itself: the file becomes `<path>.1` and a new one starts,
//! cut between whole lines.
//!
//! Deliberately not here: logging itself. Writing a report from inside the logger would deadlock
//! on the logger's own lock, hence the note for the loop.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct LogFile {
    path: PathBuf,
    file: File,
    /// `--log-max-size`: past it the file is moved to `<path>.1` and a new one started.
    max_size: Option<u64>,
    /// Bytes in the open file.
    size: u64,
    /// Rotations so far, to tell one report of a rotation from the next.
    rotations: u64,
    /// When the path was last checked against the open file.
    checked: Instant,
}

impl LogFile {
    pub fn open(path: &Path, max_size: Option<u64>) -> io::Result<LogFile> {
        let file = append(path)?;
        OPENED.store(true, Ordering::SeqCst);
        Ok(LogFile {
            path: path.to_owned(),
            size: file.metadata().map_or(0, |m| m.len()),
            rotations: 0,
            file,
            max_size,
            checked: Instant::now(),
        })
    }

    /// Opens the path anew, as asked with SIGUSR1 (or SIGHUP, headless) after the file was rotated.
    fn reopen(&mut self) {
        match append(&self.path) {
            Ok(file) => self.take(file),
            Err(e) => note(format!(
                "cannot reopen log file {}: {e}; writing to the old one",
                self.path.display()
            )),
        }
        self.checked = Instant::now();
    }

    /// Writes to `file` from now on.
    fn take(&mut self, file: File) {
        self.size = file.metadata().map_or(0, |m| m.len());
        self.file = file;
    }

    /// The file reached `--log-max-size`: it becomes `<path>.1` (replacing an older one) and a new
    /// file is started at the path, so the reports never take more than twice the cap on disk.
    fn rotate(&mut self, max: u64) {
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        let old = PathBuf::from(old);
        let path = self.path.display().to_string();
        match fs::rename(&self.path, &old).and_then(|()| append(&self.path)) {
            Ok(file) => {
                self.take(file);
                self.rotations += 1;
                note(format!(
                    "log file {path} reached --log-max-size ({max} bytes): moved to {}, a new one \
                     started (rotation {})",
                    old.display(),
                    self.rotations
                ));
            }
            Err(e) => {
                // Still the old file: keep writing it rather than lose reports, and say so.
                self.size = 0;
                note(format!(
                    "cannot rotate log file {path}: {e}; writing on past --log-max-size"
                ));
            }
        }
    }

    /// How much of `buf` goes into the open file before it must be rotated: all of it, or up to
    /// the end of the last whole line that still fits under the cap (`None`: rotate first).
    fn fits(&self, buf: &[u8]) -> Option<usize> {
        let Some(max) = self.max_size else {
            return Some(buf.len());
        };
        let room = usize::try_from(max.saturating_sub(self.size)).unwrap_or(usize::MAX);
        if buf.len() <= room {
            return Some(buf.len());
        }
        match memchr::memrchr(b'\n', &buf[..room]) {
            Some(end) => Some(end + 1),
            // A line longer than the cap goes whole into a file of its own.
            None if self.size == 0 => {
                Some(memchr::memchr(b'\n', buf).map_or(buf.len(), |end| end + 1))
            }
            None => None,
        }
    }

    /// Opens the path anew if it no longer leads to the file we write.
    fn follow_path(&mut self) {
        let same = match (fs::metadata(&self.path), self.file.metadata()) {
            (Ok(on_path), Ok(open)) => on_path.dev() == open.dev() && on_path.ino() == open.ino(),
            _ => false,
        };
        if same {
            return;
        }
        let path = self.path.display().to_string();
        match append(&self.path) {
            Ok(file) => {
                self.take(file);
                note(format!(
                    "log file {path} was removed or replaced; writing to a new one"
                ));
            }
            Err(e) => note(format!(
                "log file {path} is gone ({e}); reports go on on stdout only"
            )),
        }
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if REOPEN.swap(false, Ordering::SeqCst) {
            self.reopen();
        }
        if self.checked.elapsed() >= RECHECK {
            self.checked = Instant::now();
            self.follow_path();
        }
        let len = match (self.fits(buf), self.max_size) {
            (Some(len), _) => len,
            (None, Some(max)) => {
                self.rotate(max);
                self.fits(buf).unwrap_or(buf.len())
            }
            (None, None) => buf.len(),
        };
        let written = self.file.write(&buf[..len]).inspect_err(|e| {
            note(format!(
                "cannot write log file {}: {e}; reports go on on stdout",
                self.path.display()
            ))
        })?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Asks the log file to be opened anew before its next write (the reports of the turn that asked
/// go to the new file).
pub fn request_reopen() {
    REOPEN.store(true, Ordering::SeqCst);
}

/// Whether a log file was opened: there is one to reopen.
pub fn is_open() -> bool {
    OPENED.load(Ordering::SeqCst)
}

static REOPEN: AtomicBool = AtomicBool::new(false);
static OPENED: AtomicBool = AtomicBool::new(false);

/// The trouble with the log file that the operator has not been told of yet, oldest first.
pub fn take_trouble() -> Vec<String> {
    let mut trouble = TROUBLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    std::mem::take(&mut trouble.pending)
}

/// Notes trouble for the loop to report, unless it is what was noted last: a file that keeps
/// failing is reported once, not once a turn. Every different note is kept until reported: one
/// turn's reports may fill the file several times over, and each rotation is a warning of its
/// own (at most one per `--log-max-size` bytes written, so the list is bounded by the turn).
fn note(message: String) {
    let mut trouble = TROUBLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if trouble.last != message {
        trouble.last.clone_from(&message);
        trouble.pending.push(message);
    }
}

struct Trouble {
    pending: Vec<String>,
    last: String,
}

static TROUBLE: Mutex<Trouble> = Mutex::new(Trouble {
    pending: Vec::new(),
    last: String::new(),
});

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// How often the path is checked against the open file, at most.
const RECHECK: Duration = Duration::from_secs(1);
