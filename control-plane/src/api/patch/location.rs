//! Where a strategic merge is in the patched object: named in error messages, and counted
//! so that nesting beyond MAX_DEPTH is refused instead of recursed into.
use std::fmt;

use super::{MAX_DEPTH, PatchError};

/// One step down from the top-level object, linked to its parent; built on the stack as the
/// merge recurses and only rendered when an error names it.
pub(super) struct At<'a> {
    parent: Option<&'a At<'a>>,
    step: Step<'a>,
    depth: usize,
}

enum Step<'a> {
    Root,
    Field(&'a str),
    /// `[name=web]` for a merge-list element, `[2]` for a position.
    Element(String),
}

impl<'a> At<'a> {
    pub(super) fn root() -> At<'static> {
        At {
            parent: None,
            step: Step::Root,
            depth: 0,
        }
    }

    pub(super) fn field(&'a self, name: &'a str) -> Result<At<'a>, PatchError> {
        self.child(Step::Field(name))
    }

    pub(super) fn element(&'a self, label: String) -> Result<At<'a>, PatchError> {
        self.child(Step::Element(label))
    }

    fn child(&'a self, step: Step<'a>) -> Result<At<'a>, PatchError> {
        if self.depth >= MAX_DEPTH {
            return Err(PatchError::Malformed(format!(
                "strategic merge patch nests deeper than {MAX_DEPTH} levels at {self}"
            )));
        }
        Ok(At {
            parent: Some(self),
            step,
            depth: self.depth + 1,
        })
    }
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut steps = Vec::with_capacity(self.depth + 1);
        let mut at = Some(self);
        while let Some(current) = at {
            steps.push(&current.step);
            at = current.parent;
        }
        if self.depth == 0 {
            return f.write_str("the top level");
        }
        let mut first = true;
        for step in steps.into_iter().rev() {
            match step {
                Step::Root => {}
                Step::Field(name) if first => f.write_str(name)?,
                Step::Field(name) => write!(f, ".{name}")?,
                Step::Element(label) => f.write_str(label)?,
            }
            if !matches!(step, Step::Root) {
                first = false;
            }
        }
        Ok(())
    }
}
