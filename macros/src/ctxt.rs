//! Error collection.
//!
//! Every stage reports problems here instead of returning early, so one expansion shows
//! every independent mistake at once, each at the user's offending tokens. The entry
//! point turns the collected errors into `compile_error!` invocations placed next to the
//! user's item, which is emitted unchanged so that its other uses still type-check.

use std::fmt::Display;

use quote::ToTokens;

#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub fn new() -> Self {
        Ctxt::default()
    }

    /// Report an error at the given tokens.
    pub fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Report an error at a span.
    pub fn error_at(&mut self, span: proc_macro2::Span, message: impl Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    pub fn syn_error(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// How many errors are collected so far (to tell whether one item added any).
    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// All errors, combined into one (each keeps its own span).
    pub fn check(self) -> Result<(), syn::Error> {
        let mut errors = self.errors.into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for e in errors {
            combined.combine(e);
        }
        Err(combined)
    }
}
