//! The crate's one error type.

use crate::isa::Isa;
use std::fmt;

/// Why a kernel refused its arguments.
///
/// Every variant names the argument at fault (`arg`) and says what is wrong in
/// words (`Display`), e.g. `bias has 767 elements but x has rows of 768`.
/// Kernels check everything before they touch memory: when an `Err` comes back
/// the output buffer has not been written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// The requested instruction set cannot run on this CPU (or this build).
    IsaUnavailable {
        /// The level that was asked for.
        requested: Isa,
    },
    /// A string did not name an instruction set (`TK_ISA`, `Isa::from_str`).
    UnknownIsa {
        /// The text that was given.
        value: String,
    },
    /// A length or dimension disagrees with another argument.
    ShapeMismatch {
        /// The argument at fault.
        arg: &'static str,
        /// What is wrong, in words.
        msg: String,
    },
    /// A dimension is zero where at least one element is required.
    Empty {
        /// The argument at fault.
        arg: &'static str,
        /// What is wrong, in words.
        msg: String,
    },
    /// A view reaches outside its data, or its extent overflows `usize`.
    OutOfBounds {
        /// The argument at fault.
        arg: &'static str,
        /// What is wrong, in words.
        msg: String,
    },
    /// A mutable view whose elements overlap one another.
    Overlapping {
        /// The argument at fault.
        arg: &'static str,
        /// What is wrong, in words.
        msg: String,
    },
    /// Any other invalid argument (an option that cannot hold, a bad count).
    InvalidArgument {
        /// The argument at fault.
        arg: &'static str,
        /// What is wrong, in words.
        msg: String,
    },
}

impl KernelError {
    /// The name of the argument at fault (`"isa"` for the ISA variants).
    pub fn arg(&self) -> &'static str {
        match self {
            KernelError::IsaUnavailable { .. } | KernelError::UnknownIsa { .. } => "isa",
            KernelError::ShapeMismatch { arg, .. }
            | KernelError::Empty { arg, .. }
            | KernelError::OutOfBounds { arg, .. }
            | KernelError::Overlapping { arg, .. }
            | KernelError::InvalidArgument { arg, .. } => arg,
        }
    }

    pub(crate) fn shape(arg: &'static str, msg: impl Into<String>) -> Self {
        KernelError::ShapeMismatch {
            arg,
            msg: msg.into(),
        }
    }

    pub(crate) fn empty(arg: &'static str, msg: impl Into<String>) -> Self {
        KernelError::Empty {
            arg,
            msg: msg.into(),
        }
    }

    pub(crate) fn bounds(arg: &'static str, msg: impl Into<String>) -> Self {
        KernelError::OutOfBounds {
            arg,
            msg: msg.into(),
        }
    }

    pub(crate) fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        KernelError::InvalidArgument {
            arg,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelError::IsaUnavailable { requested } => write!(
                f,
                "isa {requested} is not available on this CPU (available: {:?})",
                Isa::available()
            ),
            KernelError::UnknownIsa { value } => {
                // The names come from `Isa::ALL`, so a new level is listed
                // without touching this message.
                write!(f, "'{value}' is not an instruction set (expected ")?;
                let n = Isa::ALL.len();
                for (i, isa) in Isa::ALL.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i + 1 == n => " or ",
                        _ => ", ",
                    };
                    write!(f, "{sep}{}", isa.name())?;
                }
                f.write_str(")")
            }
            KernelError::ShapeMismatch { msg, .. }
            | KernelError::Empty { msg, .. }
            | KernelError::OutOfBounds { msg, .. }
            | KernelError::Overlapping { msg, .. }
            | KernelError::InvalidArgument { msg, .. } => f.write_str(msg),
        }
    }
}

impl std::error::Error for KernelError {}
