//! The hand-off from the loop to the line editor: each turn's reports as one block, and where the
//! prompt points.
//!
//! The loop never waits on the editor: `post` appends the turn's text under a lock that the other
//! side holds only to swap the text out (never while it draws), and past `CAP` bytes waiting it
//! counts the lines it drops instead of holding more. The printer thread (`editor.rs`) waits in
//! `take` and hands each block to the editor, which may take its time: that wait is the printer
//! thread's, never the loop's.
//!
//! Deliberately not here: drawing, the terminal, or what a report says.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::Target;

/// What the printer thread takes in one go: the reports since the last take, the lines that did
/// not fit, and the prompt's newest target if it changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub text: String,
    /// Report lines dropped because `CAP` bytes were already waiting.
    pub dropped: u64,
    /// `Some` when the prompt's target changed since the last take (`Some(None)`: nobody).
    pub prompt: Option<Option<Target>>,
}

pub struct Mailbox {
    waiting: Mutex<Waiting>,
    ready: Condvar,
}

#[derive(Default)]
struct Waiting {
    batch: Batch,
    /// Whether an editor draws the reports; until it does (and once it has stopped), the sink
    /// writes them itself.
    attached: bool,
    /// The editor is stopping: `take` gives what is left, then `None`.
    closing: bool,
    /// Whether an editor ever attached.
    ever: bool,
}

impl Mailbox {
    pub const fn new() -> Mailbox {
        Mailbox {
            waiting: Mutex::new(Waiting {
                batch: Batch {
                    text: String::new(),
                    dropped: 0,
                    prompt: None,
                },
                attached: false,
                closing: false,
                ever: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// The loop's side: one turn's reports, whole lines. Returns `false` if no editor draws them
    /// (before it starts, after it stops): the caller writes them out itself.
    pub fn post(&self, text: &str) -> bool {
        let mut waiting = self.lock();
        if !waiting.attached {
            return false;
        }
        let batch = &mut waiting.batch;
        if batch.text.len() + text.len() <= CAP {
            batch.text.push_str(text);
        } else {
            batch.dropped += memchr::memchr_iter(b'\n', text.as_bytes()).count() as u64;
        }
        drop(waiting);
        self.ready.notify_one();
        true
    }

    /// The loop's side: the prompt now points at `target` (`None`: nobody has spoken yet).
    pub fn point(&self, target: Option<Target>) {
        self.lock().batch.prompt = Some(target);
        self.ready.notify_one();
    }

    /// The printer's side: waits for reports or a new prompt and takes them all; `None` once the
    /// mailbox is closing and nothing is left.
    pub fn take(&self) -> Option<Batch> {
        let mut waiting = self.lock();
        loop {
            let batch = &waiting.batch;
            if !batch.text.is_empty() || batch.dropped > 0 || batch.prompt.is_some() {
                return Some(std::mem::take(&mut waiting.batch));
            }
            if waiting.closing {
                return None;
            }
            waiting = self
                .ready
                .wait(waiting)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// An editor draws the reports from now on.
    pub fn attach(&self) {
        let mut waiting = self.lock();
        waiting.attached = true;
        waiting.closing = false;
        waiting.ever = true;
    }

    /// The editor went away without taking `unsent`: it and whatever waits are written to `out`
    /// now, under the lock, so that the sink's own writes, from the next post on, come after them.
    pub fn detach_writing(&self, unsent: &str, out: &mut impl Write) {
        let mut waiting = self.lock();
        waiting.attached = false;
        waiting.closing = true;
        let rest = std::mem::take(&mut waiting.batch);
        let _ = out
            .write_all(unsent.as_bytes())
            .and_then(|()| out.write_all(rest.text.as_bytes()))
            .and_then(|()| out.flush());
    }

    /// The editor stops: reports posted from now on are the sink's to write; `take` gives what is
    /// left, then `None`.
    pub fn close(&self) {
        let mut waiting = self.lock();
        waiting.attached = false;
        waiting.closing = true;
        drop(waiting);
        self.ready.notify_all();
    }

    /// Whether an editor ever drew the reports.
    pub fn was_attached(&self) -> bool {
        self.lock().ever
    }

    fn lock(&self) -> MutexGuard<'_, Waiting> {
        // A panic elsewhere while holding the lock leaves plain data behind: use it.
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The most report text that waits for the editor, in bytes: about ten thousand lines.
pub const CAP: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConnId;

    #[test]
    fn nothing_is_taken_in_before_an_editor_attaches() {
        let mailbox = Mailbox::new();
        assert!(!mailbox.post("a\n"));
        mailbox.attach();
        assert!(mailbox.post("b\n"));
        mailbox.close();
        assert!(!mailbox.post("c\n"));
        assert_eq!(mailbox.take().map(|b| b.text), Some("b\n".to_owned()));
        assert_eq!(mailbox.take(), None);
    }

    #[test]
    fn an_editor_gone_leaves_its_text_to_be_written_in_order() {
        let mailbox = Mailbox::new();
        mailbox.attach();
        mailbox.post("two\n");
        let mut out = Vec::new();
        mailbox.detach_writing("one\n", &mut out);
        assert_eq!(out, b"one\ntwo\n");
        assert!(!mailbox.post("three\n"));
        assert_eq!(mailbox.take(), None);
    }

    #[test]
    fn turns_coalesce_and_the_newest_prompt_wins() {
        let mailbox = Mailbox::new();
        mailbox.attach();
        let target = |id| Target {
            id: ConnId(id),
            name: None,
            sticky: false,
            gone: false,
        };
        mailbox.point(Some(target(1)));
        mailbox.post("one\n");
        mailbox.point(Some(target(2)));
        mailbox.post("two\n");
        let batch = mailbox.take();
        assert_eq!(
            batch,
            Some(Batch {
                text: "one\ntwo\n".into(),
                dropped: 0,
                prompt: Some(Some(target(2))),
            })
        );
    }

    #[test]
    fn past_the_cap_lines_are_counted_not_kept() {
        let mailbox = Mailbox::new();
        mailbox.attach();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..CAP / 100 + 50 {
            assert!(mailbox.post(&line));
        }
        // 200 bytes: more than the 76 left.
        let block = "y\n".repeat(100);
        mailbox.post(&block);
        let batch = mailbox.take().expect("a batch");
        assert_eq!(batch.text.len(), CAP / 100 * 100);
        assert_eq!(batch.dropped, 50 + 100);
        // Taken, the room is back.
        assert!(mailbox.post("z\n"));
        assert_eq!(mailbox.take().map(|b| b.text), Some("z\n".to_owned()));
    }
}
