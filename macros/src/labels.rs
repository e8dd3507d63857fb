//! Labelled `break`/`continue`, rewritten before anything else to the flags and plain
//! exits they stand for, so the rest of the macro only knows unlabelled loops:
//!
//! ```text
//! 'rows: for i in 0..n {          let mut break_rows = false;
//!     for j in 0..m {             for i in 0..n {
//!         if c { break 'rows; }        let mut continue_rows = false;
//!         if d { continue 'rows; }     for j in 0..m {
//!         …                                if c { break_rows = true; break; }
//!     }                                    if d { continue_rows = true; break; }
//!     rest                                 …
//! }                                    }
//!                                      if break_rows { break; }
//!                                      if continue_rows { continue; }
//!                                      rest
//!                                  }
//! ```
//!
//! After every statement that holds such an exit inside a loop nested in it, a check
//! leaves the enclosing loop too (or, at the labelled loop's own level, breaks or
//! continues it), so nothing between the exit and its target runs.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{parse_quote_spanned, Expr, Ident};

use crate::ctxt::Ctxt;

/// Rewrite every labelled loop of `body`; `fresh` gives names no one uses.
pub fn unlabel(body: &mut syn::Block, fresh: &mut dyn FnMut(&str, Span) -> Ident, cx: &mut Ctxt) {
    let mut finder = Finder { fresh, cx };
    finder.visit_block_mut(body);
}

struct Finder<'a, 'c> {
    fresh: &'a mut dyn FnMut(&str, Span) -> Ident,
    cx: &'c mut Ctxt,
}

impl VisitMut for Finder<'_, '_> {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        // Inner loops first: their own labels are gone when the outer one is rewritten.
        syn::visit_mut::visit_expr_mut(self, e);
        let (label, body) = match e {
            Expr::ForLoop(f) => (f.label.take(), &mut f.body),
            Expr::While(w) => (w.label.take(), &mut w.body),
            Expr::Loop(l) => (l.label.take(), &mut l.body),
            Expr::Block(b) if b.label.is_some() => {
                let label = b.label.as_ref().expect("label");
                self.cx.error_spanned_by(
                    label,
                    "a labelled block is not supported inside a `#[differentiable]` function; use a loop, or `if`/`else`",
                );
                // Reported once: the `break 'label` inside it is not reported again.
                *e = crate::desugar::rejected(e.span());
                return;
            }
            _ => return,
        };
        let Some(label) = label else { return };
        let name = label.name.ident.to_string();
        let span = label.span();
        let mut rw = Rewriter {
            label: name.clone(),
            brk: (*self.fresh)(&format!("break_{name}"), span),
            cont: (*self.fresh)(&format!("continue_{name}"), span),
            uses_brk: false,
            uses_cont: false,
            depth: 0,
            exits: Vec::new(),
            cx: self.cx,
        };
        rw.visit_block_mut(body);
        let (brk, cont) = (rw.brk.clone(), rw.cont.clone());
        if rw.uses_cont {
            body.stmts.insert(0, parse_quote_spanned!(span=> let mut #cont = false;));
        }
        if rw.uses_brk {
            let lp = e.clone();
            *e = parse_quote_spanned!(span=> {
                let mut #brk = false;
                #lp
            });
        }
    }

    fn visit_expr_closure_mut(&mut self, _: &mut syn::ExprClosure) {}
    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

/// Rewrites the exits of one labelled loop inside its body.
struct Rewriter<'c> {
    label: String,
    brk: Ident,
    cont: Ident,
    uses_brk: bool,
    uses_cont: bool,
    /// Loops between the labelled loop and the expression being visited.
    depth: usize,
    /// The depth of every exit rewritten so far.
    exits: Vec<usize>,
    cx: &'c mut Ctxt,
}

impl Rewriter<'_> {
    fn targets(&self, label: &Option<syn::Lifetime>) -> bool {
        label.as_ref().is_some_and(|l| l.ident == self.label)
    }

    /// What follows a statement holding an exit from a deeper loop.
    fn check(&self, span: Span) -> Vec<syn::Stmt> {
        let (brk, cont) = (&self.brk, &self.cont);
        let mut out = Vec::new();
        if self.depth == 0 {
            if self.uses_brk {
                out.push(parse_quote_spanned!(span=> if #brk { break; }));
            }
            if self.uses_cont {
                out.push(parse_quote_spanned!(span=> if #cont { continue; }));
            }
        } else {
            let cond: Expr = match (self.uses_brk, self.uses_cont) {
                (true, true) => parse_quote_spanned!(span=> #brk || #cont),
                (true, false) => parse_quote_spanned!(span=> #brk),
                _ => parse_quote_spanned!(span=> #cont),
            };
            out.push(parse_quote_spanned!(span=> if #cond { break; }));
        }
        out
    }
}

impl VisitMut for Rewriter<'_> {
    fn visit_block_mut(&mut self, b: &mut syn::Block) {
        let mut out = Vec::with_capacity(b.stmts.len());
        for mut s in std::mem::take(&mut b.stmts) {
            let mark = self.exits.len();
            self.visit_stmt_mut(&mut s);
            let deeper = self.exits[mark..].iter().any(|d| *d > self.depth);
            let span = s.span();
            // A tail expression of unit type (a loop) becomes a statement first.
            if let (true, syn::Stmt::Expr(e, semi @ None)) = (deeper, &mut s) {
                if matches!(e, Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) | Expr::If(_) | Expr::Block(_)) {
                    *semi = Some(Default::default());
                }
            }
            out.push(s);
            if deeper {
                out.extend(self.check(span));
            }
        }
        b.stmts = out;
    }

    fn visit_expr_mut(&mut self, e: &mut Expr) {
        let span = e.span();
        match e {
            Expr::Break(b) if self.targets(&b.label) => {
                if let Some(v) = &b.expr {
                    self.cx.error_spanned_by(
                        v,
                        "`break 'label value` is not supported inside a `#[differentiable]` function; assign the value to a variable declared before the loop, then `break 'label`",
                    );
                    // Reported once: the rest of the macro sees a rejected expression.
                    *e = crate::desugar::rejected(span);
                    return;
                }
                self.exits.push(self.depth);
                if self.depth == 0 {
                    b.label = None;
                } else {
                    self.uses_brk = true;
                    let brk = &self.brk;
                    *e = parse_quote_spanned!(span=> { #brk = true; break; });
                }
            }
            Expr::Continue(c) if self.targets(&c.label) => {
                self.exits.push(self.depth);
                if self.depth == 0 {
                    c.label = None;
                } else {
                    self.uses_cont = true;
                    let cont = &self.cont;
                    *e = parse_quote_spanned!(span=> { #cont = true; break; });
                }
            }
            Expr::ForLoop(f) => {
                self.visit_expr_mut(&mut f.expr);
                self.depth += 1;
                self.visit_block_mut(&mut f.body);
                self.depth -= 1;
            }
            Expr::While(w) => {
                self.depth += 1;
                self.visit_expr_mut(&mut w.cond);
                self.visit_block_mut(&mut w.body);
                self.depth -= 1;
            }
            Expr::Loop(l) => {
                self.depth += 1;
                self.visit_block_mut(&mut l.body);
                self.depth -= 1;
            }
            Expr::Closure(_) => {}
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}
