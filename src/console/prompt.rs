//! Where a bare console line goes, as the line editor's prompt shows it (pure).

use std::fmt;

use crate::ids::ConnId;

/// The client a bare line goes to, as the loop tells the line editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: ConnId,
    /// Its room name, when it has one other than its id (`--relay`, after `/nick`).
    pub name: Option<String>,
    /// Chosen with `/to <id>`, rather than the last to speak.
    pub sticky: bool,
    /// It has left (or is leaving): a bare line would not be sent.
    pub gone: bool,
}

/// The prompt's text before `> `: `to #5 alice`, `to #5 (fixed)`, `to #5 (left)`, or
/// `nobody has spoken` before anyone has.
pub struct Shown<'a>(pub Option<&'a Target>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(target) = self.0 else {
            return f.write_str("nobody has spoken");
        };
        write!(f, "to {}", target.id)?;
        if let Some(name) = &target.name {
            write!(f, " {name}")?;
        }
        if target.gone {
            f.write_str(" (left)")?;
        } else if target.sticky {
            f.write_str(" (fixed)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_says_where_a_bare_line_goes() {
        let mut target = Target {
            id: ConnId(5),
            name: Some("alice".into()),
            sticky: false,
            gone: false,
        };
        assert_eq!(Shown(Some(&target)).to_string(), "to #5 alice");
        target.sticky = true;
        assert_eq!(Shown(Some(&target)).to_string(), "to #5 alice (fixed)");
        target.name = None;
        target.gone = true;
        assert_eq!(Shown(Some(&target)).to_string(), "to #5 (left)");
        assert_eq!(Shown(None).to_string(), "nobody has spoken");
    }
}
