//! The console on the operator's terminal: a reedline line editor that keeps what is being typed.
//!
//! Three parties: the loop, which posts each turn's reports and the prompt's target into the
//! [`Mailbox`] and never waits; the printer thread, which takes them out and hands each block to
//! reedline's external printer (a rendezvous: it waits until the editor takes the block, which it
//! draws above the input line at once); and the editor thread, which reads lines and sends them
//! to the loop with the client its prompt showed when the operator began typing.
//!
//! Raw mode turns the terminal's own signal keys off: Ctrl-C reaches the editor, which raises
//! SIGINT for the process, so the one shutdown path (and the second Ctrl-C's exit) stays. The
//! terminal's settings are kept from before raw mode so that every way out can put them back.
//!
//! Deliberately not here: what a line means (`parse_typed`), or what the reports say.

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SendError, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use mio::Waker;
use reedline::{
    ColumnarMenu, Completer, CompletionResult, Emacs, ExternalPrinter, Highlighter, KeyCode,
    KeyModifiers, MenuBuilder, Prompt, PromptEditMode, PromptHistorySearch, Reedline,
    ReedlineEvent, ReedlineMenu, Signal, Span, StyledText, Suggestion, default_emacs_keybindings,
};

use super::mailbox::Mailbox;
use super::prompt::{Shown, Target};
use super::{Command, ConsoleInput, MAX_CONSOLE_LINE, parse_typed};
use crate::ids::ConnId;

/// For the logger, when it draws on the terminal: the hand-off to a line editor if the console
/// will be one (stdin and stdout are both a terminal, and chatd is its foreground job), else
/// `None`. Asked once, before the console starts.
pub fn mailbox_for_terminal() -> Option<&'static Mailbox> {
    let wanted = *WANTED.get_or_init(|| {
        // SAFETY: tcgetpgrp and getpgrp only read the process's state; fd 0 is stdin.
        let foreground = unsafe { libc::tcgetpgrp(0) == libc::getpgrp() };
        io::stdin().is_terminal() && io::stdout().is_terminal() && foreground
    });
    wanted.then_some(&MAILBOX)
}

/// The hand-off, if the logger took it (`mailbox_for_terminal`): then the console is the editor.
pub(super) fn mailbox() -> Option<&'static Mailbox> {
    WANTED.get().copied().unwrap_or(false).then_some(&MAILBOX)
}

/// Starts the editor and printer threads; the editor sends what is typed into `tx` and wakes the
/// loop through `waker`.
pub(super) fn spawn(
    tx: Sender<ConsoleInput>,
    waker: Arc<Waker>,
    quitting: Arc<AtomicBool>,
) -> io::Result<()> {
    let mut saved = std::mem::MaybeUninit::<libc::termios>::uninit();
    // SAFETY: tcgetattr writes one termios through the pointer, which points at a live local.
    if unsafe { libc::tcgetattr(0, saved.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: tcgetattr succeeded, so it filled the termios in.
    let _ = SAVED.set(unsafe { saved.assume_init() });
    let shared = Arc::new(Mutex::new(Shared::default()));
    let printer = ExternalPrinter::<String>::new(0);
    let blocks = printer.sender();
    let stop = Arc::clone(STOP.get_or_init(Arc::default));
    let completer = Complete {
        tx: tx.clone(),
        waker: Arc::clone(&waker),
    };
    let mut keys = default_emacs_keybindings();
    keys.add_binding(
        KeyModifiers::NONE,
        KeyCode::Tab,
        ReedlineEvent::UntilFound(vec![
            ReedlineEvent::Menu(MENU.into()),
            ReedlineEvent::MenuNext,
        ]),
    );
    let mut editor = Reedline::create()
        .with_edit_mode(Box::new(Emacs::new(keys)))
        .with_completer(Box::new(completer))
        .with_menu(ReedlineMenu::EngineCompleter(Box::new(
            ColumnarMenu::default().with_name(MENU),
        )))
        .with_quick_completions(true)
        .with_partial_completions(true)
        .with_highlighter(Box::new(Latch(Arc::clone(&shared))))
        .with_ansi_colors(std::env::var_os("NO_COLOR").is_none())
        .with_external_printer(printer)
        .with_break_signal(stop);
    let repaint = editor.repaint_signal();
    MAILBOX.attach();
    let prompt = OperatorPrompt(Arc::clone(&shared));
    thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let end = edit(&mut editor, &prompt, &tx, &waker, &quitting);
            // Dropped, the editor lets go of the printer's channel: the printer writes what is
            // left itself, and the reports after it are the sink's again.
            drop(editor);
            if let Some(end) = end {
                let _ = tx.send(ConsoleInput::Closed(end));
                let _ = waker.wake();
            } else {
                // Finishing: the prompt line goes, the last report stays the last line.
                let mut out = io::stdout().lock();
                let _ = out.write_all(b"\r\x1b[2K").and_then(|()| out.flush());
            }
            EDITOR_DONE.set();
        })?;
    thread::Builder::new()
        .name("console-printer".into())
        .spawn(move || {
            // (reedline does not name the signal's type: it is used through a closure.)
            print(&shared, || repaint.request_repaint(), &blocks);
            PRINTER_DONE.set();
        })?;
    Ok(())
}

/// Reads lines until the console closes (`Some(why)`: Ctrl-D, `None` inside, or a terminal error)
/// or `finish` stops it (`None`).
fn edit(
    editor: &mut Reedline,
    prompt: &OperatorPrompt,
    tx: &Sender<ConsoleInput>,
    waker: &Waker,
    quitting: &AtomicBool,
) -> Option<Option<io::Error>> {
    loop {
        let input = match editor.read_line(prompt) {
            Ok(Signal::Success(line)) => {
                let to = prompt.take_target();
                if line.len() as u64 > MAX_CONSOLE_LINE {
                    ConsoleInput::TooLong
                } else {
                    if matches!(parse_typed(&line), Some(Ok(Command::Quit))) {
                        quitting.store(true, Ordering::SeqCst);
                    }
                    ConsoleInput::Typed { line, to }
                }
            }
            Ok(Signal::CtrlC) => {
                prompt.take_target();
                // Raw mode took Ctrl-C from the terminal; it is still the operator's interrupt.
                // SAFETY: kill(2) with this process's own id and a valid signal number.
                unsafe { libc::kill(libc::getpid(), libc::SIGINT) };
                continue;
            }
            Ok(Signal::CtrlD) => return Some(None),
            Ok(Signal::ExternalBreak(_)) => return None,
            Ok(_) => continue,
            Err(e) => return Some(Some(e)),
        };
        if tx.send(input).is_err() {
            return None; // The loop has finished.
        }
        let _ = waker.wake();
    }
}

/// The printer thread: hands each batch's reports to the editor and points its prompt, until
/// `finish` closes the mailbox. If the editor goes first, what it did not take is written out
/// here, and the sink writes the rest.
fn print(shared: &Mutex<Shared>, repaint: impl Fn(), blocks: &SyncSender<String>) {
    while let Some(batch) = MAILBOX.take() {
        if let Some(target) = batch.prompt {
            lock(shared).live = target;
            repaint();
        }
        let mut text = batch.text;
        if batch.dropped > 0 {
            text.push_str(&format!(
                "({} report lines not drawn here: they came faster than the terminal took them)\n",
                batch.dropped
            ));
        }
        if text.is_empty() {
            continue;
        }
        if let Err(SendError(text)) = blocks.send(text) {
            MAILBOX.detach_writing(&text, &mut io::stdout().lock());
            return;
        }
    }
}

/// Stops the editor as the process ends: the last reports are drawn, the prompt line cleared and
/// the terminal given back as it was. Waits a bounded time for each.
pub fn finish() {
    if mailbox().is_none() || !MAILBOX.was_attached() {
        return;
    }
    MAILBOX.close();
    PRINTER_DONE.wait(GRACE);
    if let Some(stop) = STOP.get() {
        stop.store(true, Ordering::SeqCst);
    }
    if !EDITOR_DONE.wait(GRACE) {
        restore_terminal();
    }
}

/// Puts the terminal's settings back as they were before raw mode, if the editor changed them,
/// and leaves the prompt's line. Async-signal-safe: the second interrupt's handler calls it
/// before it exits.
pub fn restore_terminal() {
    if let Some(saved) = SAVED.get() {
        const NEW_LINE: &[u8] = b"\r\n";
        // SAFETY: tcsetattr reads one termios through the pointer, which points at a static that
        // is never written again; write(2) reads a static buffer; both are async-signal-safe.
        unsafe {
            libc::tcsetattr(0, libc::TCSANOW, saved);
            libc::write(2, NEW_LINE.as_ptr().cast(), NEW_LINE.len());
        }
    }
}

/// What the prompt, the latch and the printer share.
#[derive(Default)]
struct Shared {
    /// Where a bare line goes now, as the loop said last.
    live: Option<Target>,
    /// What the prompt showed when last drawn.
    shown: Option<Target>,
    /// Where the line being typed goes: what the prompt showed when the line stopped being
    /// empty. `None` while it is empty.
    latched: Option<Option<Target>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The prompt: `to #5 alice> `. While a line is being typed it stays where it was when typing
/// began; an empty line follows the loop.
struct OperatorPrompt(Arc<Mutex<Shared>>);

impl OperatorPrompt {
    /// The client of the line just entered, and an empty line for the next.
    fn take_target(&self) -> Option<ConnId> {
        let mut shared = lock(&self.0);
        let target = shared
            .latched
            .take()
            .unwrap_or_else(|| shared.shown.clone());
        target.map(|target| target.id)
    }
}

impl Prompt for OperatorPrompt {
    fn render_prompt_left(&self) -> Cow<'_, str> {
        let mut shared = lock(&self.0);
        let target = match &shared.latched {
            Some(latched) => latched.clone(),
            None => shared.live.clone(),
        };
        let text = Shown(target.as_ref()).to_string();
        shared.shown = target;
        Cow::Owned(text)
    }

    fn render_prompt_right(&self) -> Cow<'_, str> {
        Cow::Borrowed("")
    }

    fn render_prompt_indicator(&self, _mode: PromptEditMode) -> Cow<'_, str> {
        Cow::Borrowed("> ")
    }

    fn render_prompt_multiline_indicator(&self) -> Cow<'_, str> {
        Cow::Borrowed("::: ")
    }

    fn render_prompt_history_search_indicator(&self, search: PromptHistorySearch) -> Cow<'_, str> {
        Cow::Owned(format!("(search: {}) ", search.term))
    }
}

/// Called with the line at every redraw, before the prompt is drawn: the moment the line stops
/// being empty, the target the prompt showed is latched for it.
struct Latch(Arc<Mutex<Shared>>);

impl Highlighter for Latch {
    fn highlight(&self, line: &str, _cursor: usize) -> StyledText {
        let mut shared = lock(&self.0);
        if line.is_empty() {
            shared.latched = None;
        } else if shared.latched.is_none() {
            shared.latched = Some(shared.shown.clone());
        }
        let mut styled = StyledText::new();
        styled.push((Default::default(), line.to_owned()));
        styled
    }
}

/// Tab: commands after a leading `/`; client ids after `@`, `#`, `/to` and `/kick`; and in the
/// room, names (a name after `@` or `/to` completes to its id). The clients are the loop's: asked
/// for each Tab, with a deadline.
struct Complete {
    tx: Sender<ConsoleInput>,
    waker: Arc<Waker>,
}

impl Completer for Complete {
    fn complete(&mut self, line: &str, pos: usize) -> CompletionResult {
        CompletionResult::fresh(self.suggest(line, pos))
    }
}

impl Complete {
    fn suggest(&self, line: &str, pos: usize) -> Vec<Suggestion> {
        let Some(head) = line.get(..pos) else {
            return Vec::new();
        };
        let start = head.rfind(' ').map_or(0, |space| space + 1);
        let word = &head[start..];
        let suggestion = |value: String, description: Option<String>| Suggestion {
            value,
            description,
            span: Span::new(start, pos),
            append_whitespace: true,
            ..Suggestion::default()
        };
        if start == 0 && word.starts_with('/') {
            return COMMANDS
                .iter()
                .filter(|command| command.starts_with(word))
                .map(|command| suggestion((*command).to_owned(), None))
                .collect();
        }
        let before = head[..start].trim_end();
        let (lead, prefix) = match word.strip_prefix('@') {
            Some(prefix) if start == 0 => ("@", prefix),
            _ if matches!(before, "/to" | "/kick") => ("", word.trim_start_matches('#')),
            _ => match word.strip_prefix('#') {
                Some(prefix) => ("#", prefix),
                // A word of a bare line: a room name, as written.
                None if word.is_empty() => return Vec::new(),
                None => {
                    return self
                        .clients(word)
                        .into_iter()
                        .filter_map(|(_, name)| name)
                        .filter(|name| starts_with_ignoring_case(name, word))
                        .map(|name| suggestion(name, None))
                        .collect();
                }
            },
        };
        self.clients(prefix)
            .into_iter()
            .map(|(id, name)| suggestion(format!("{lead}{}", id.0), name))
            .collect()
    }

    /// The open clients whose id or room name starts with `prefix`, from the loop.
    fn clients(&self, prefix: &str) -> Vec<(ConnId, Option<String>)> {
        let (reply, answer) = mpsc::channel();
        let query = ConsoleInput::Complete {
            prefix: prefix.to_owned(),
            reply,
        };
        if self.tx.send(query).is_err() {
            return Vec::new();
        }
        let _ = self.waker.wake();
        answer.recv_timeout(ASK_LOOP).unwrap_or_default()
    }
}

/// Whether `name` starts with `prefix`, ASCII case aside (room names are ASCII).
pub(crate) fn starts_with_ignoring_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A flag one thread sets once and another waits for, with a deadline.
struct Done {
    set: Mutex<bool>,
    changed: Condvar,
}

impl Done {
    const fn new() -> Done {
        Done {
            set: Mutex::new(false),
            changed: Condvar::new(),
        }
    }

    fn set(&self) {
        *self.set.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    /// Whether it was set within `limit`.
    fn wait(&self, limit: Duration) -> bool {
        let set = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        let (set, _) = self
            .changed
            .wait_timeout_while(set, limit, |set| !*set)
            .unwrap_or_else(PoisonError::into_inner);
        *set
    }
}

static MAILBOX: Mailbox = Mailbox::new();
/// Whether the console is the editor: decided once, by the logger's setup.
static WANTED: OnceLock<bool> = OnceLock::new();
/// The terminal's settings from before raw mode.
static SAVED: OnceLock<libc::termios> = OnceLock::new();
/// Set by `finish`: the editor leaves `read_line` at its next look (reedline's break signal).
static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static PRINTER_DONE: Done = Done::new();
static EDITOR_DONE: Done = Done::new();

/// How long `finish` waits for each thread: reedline looks at its channel and its break signal
/// every 100 ms.
const GRACE: Duration = Duration::from_secs(1);
/// How long a Tab waits for the loop's list of clients.
const ASK_LOOP: Duration = Duration::from_millis(500);
const MENU: &str = "completion";
/// What Tab offers after a leading `/`: every console command, and the editor's `/last`.
const COMMANDS: &[&str] = &[
    "/to", "/all", "/list", "/kick", "/stats", "/quit", "/help", "/last",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_whatever_their_case() {
        assert!(starts_with_ignoring_case("Alice", "al"));
        assert!(starts_with_ignoring_case("alice", "ALICE"));
        assert!(!starts_with_ignoring_case("al", "alice"));
        assert!(!starts_with_ignoring_case("bob", "al"));
    }
}
