//! Why a request body was refused before any handler saw it. Always the sender's
//! fault.

/// The kind of fault, which decides the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// Not the JSON of this request (`400 malformed`).
    Malformed,
    /// Well-formed, but a bound or format rule is broken (`400` with the code).
    Invalid,
    /// The body is larger than any request may be (`413`).
    TooLarge,
}

/// A refused request body or path parameter: its kind and a machine-readable code
/// naming the rule broken (`batch_too_large`, `bad_id`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of fault.
    pub kind: RefusalKind,
    /// Which rule, as the relay's `{"error": …}` names it.
    pub code: &'static str,
}

impl Refusal {
    /// Malformed JSON.
    pub fn malformed() -> Self {
        Self {
            kind: RefusalKind::Malformed,
            code: "malformed",
        }
    }

    /// A broken bound or format rule.
    pub fn invalid(code: &'static str) -> Self {
        Self {
            kind: RefusalKind::Invalid,
            code,
        }
    }

    /// A body past the size any request may have.
    pub fn too_large(code: &'static str) -> Self {
        Self {
            kind: RefusalKind::TooLarge,
            code,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code)
    }
}

impl std::error::Error for Refusal {}
