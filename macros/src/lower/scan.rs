//! Syntactic pre-passes: which names need cells, which statements may exit early.

use super::*;

/// A syntactic pre-pass over the body.
#[derive(Default)]
pub(super) struct Scan {
    pub(super) has_return: bool,
    /// Names assigned (`x = …`, `x += …`) inside nested control flow.
    pub(super) assigned_in_control: HashSet<String>,
    /// Names whose elements are assigned (`h[k] = …`, `m[i][j] += …`).
    pub(super) element_assigned: HashSet<String>,
    control_depth: usize,
}

impl<'ast> Visit<'ast> for Scan {
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.has_return = true;
        syn::visit::visit_expr_return(self, e);
    }
    fn visit_expr_assign(&mut self, e: &'ast syn::ExprAssign) {
        if let Some(name) = indexed_base(&e.left) {
            self.element_assigned.insert(name);
        }
        if self.control_depth > 0 {
            if let Some(name) = assigned_name(&e.left) {
                self.assigned_in_control.insert(name);
            }
        }
        syn::visit::visit_expr_assign(self, e);
    }
    fn visit_expr_call(&mut self, e: &'ast syn::ExprCall) {
        // `std::mem::swap(&mut a, &mut b)` assigns both.
        if self.control_depth > 0 && super::expr::is_mem_swap(&e.func) {
            for arg in &e.args {
                if let Expr::Reference(r) = strip_parens(arg) {
                    if let Some(name) = r.mutability.and_then(|_| assigned_name(&r.expr)) {
                        self.assigned_in_control.insert(name);
                    }
                }
            }
        }
        syn::visit::visit_expr_call(self, e);
    }
    fn visit_expr_binary(&mut self, e: &'ast syn::ExprBinary) {
        if compound_op(&e.op).is_some() {
            if let Some(name) = indexed_base(&e.left) {
                self.element_assigned.insert(name);
            }
        }
        if self.control_depth > 0 && compound_op(&e.op).is_some() {
            if let Some(name) = assigned_name(&e.left) {
                self.assigned_in_control.insert(name);
            }
        }
        syn::visit::visit_expr_binary(self, e);
    }
    fn visit_expr_if(&mut self, e: &'ast syn::ExprIf) {
        self.visit_expr(&e.cond);
        self.control_depth += 1;
        self.visit_block(&e.then_branch);
        if let Some((_, els)) = &e.else_branch {
            self.visit_expr(els);
        }
        self.control_depth -= 1;
    }
    fn visit_expr_match(&mut self, e: &'ast syn::ExprMatch) {
        self.visit_expr(&e.expr);
        self.control_depth += 1;
        for arm in &e.arms {
            self.visit_arm(arm);
        }
        self.control_depth -= 1;
    }
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.control_depth += 1;
        self.visit_block(&e.body);
        self.control_depth -= 1;
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.control_depth += 1;
        self.visit_expr(&e.cond);
        self.visit_block(&e.body);
        self.control_depth -= 1;
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.control_depth += 1;
        self.visit_block(&e.body);
        self.control_depth -= 1;
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

pub(super) fn assigned_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Path(p) => p.path.get_ident().map(|i| i.to_string()),
        Expr::Paren(p) => assigned_name(&p.expr),
        _ => None,
    }
}

/// `h` of `h[k]` or `m[i][j]`.
fn indexed_base(e: &Expr) -> Option<String> {
    match strip_parens(e) {
        Expr::Index(ix) => match strip_parens(&ix.expr) {
            inner @ Expr::Index(_) => indexed_base(inner),
            base => assigned_name(base),
        },
        _ => None,
    }
}

pub(super) fn compound_op(op: &syn::BinOp) -> Option<BinOp> {
    Some(match op {
        syn::BinOp::AddAssign(_) => BinOp::Add,
        syn::BinOp::SubAssign(_) => BinOp::Sub,
        syn::BinOp::MulAssign(_) => BinOp::Mul,
        syn::BinOp::DivAssign(_) => BinOp::Div,
        syn::BinOp::RemAssign(_) => BinOp::Rem,
        syn::BinOp::BitAndAssign(_) => BinOp::BitAnd,
        syn::BinOp::BitOrAssign(_) => BinOp::BitOr,
        syn::BinOp::BitXorAssign(_) => BinOp::BitXor,
        syn::BinOp::ShlAssign(_) => BinOp::Shl,
        syn::BinOp::ShrAssign(_) => BinOp::Shr,
        _ => return None,
    })
}

/// What early exits a statement may take (not counting loops nested inside it for
/// `break`/`continue`).
#[derive(Default, Clone, Copy)]
pub(super) struct Exits {
    pub(super) ret: bool,
    pub(super) brk: bool,
    pub(super) cont: bool,
}

impl Exits {
    pub(super) fn any(self) -> bool {
        self.ret || self.brk || self.cont
    }
}

#[derive(Default)]
pub(super) struct ExitScan {
    exits: Exits,
    loop_depth: usize,
}

impl<'ast> Visit<'ast> for ExitScan {
    fn visit_expr_return(&mut self, e: &'ast syn::ExprReturn) {
        self.exits.ret = true;
        syn::visit::visit_expr_return(self, e);
    }
    fn visit_expr_break(&mut self, e: &'ast syn::ExprBreak) {
        if self.loop_depth == 0 {
            self.exits.brk = true;
        }
        syn::visit::visit_expr_break(self, e);
    }
    fn visit_expr_continue(&mut self, _: &'ast syn::ExprContinue) {
        if self.loop_depth == 0 {
            self.exits.cont = true;
        }
    }
    fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
        self.visit_expr(&e.expr);
        self.loop_depth += 1;
        self.visit_block(&e.body);
        self.loop_depth -= 1;
    }
    fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
        self.loop_depth += 1;
        syn::visit::visit_expr_while(self, e);
        self.loop_depth -= 1;
    }
    fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
        self.loop_depth += 1;
        syn::visit::visit_expr_loop(self, e);
        self.loop_depth -= 1;
    }
    fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    fn visit_item(&mut self, _: &'ast syn::Item) {}
}

pub(super) fn exits_of_stmt(s: &syn::Stmt) -> Exits {
    let mut scan = ExitScan::default();
    scan.visit_stmt(s);
    scan.exits
}

pub(super) fn exits_of_block(b: &syn::Block) -> Exits {
    let mut scan = ExitScan::default();
    scan.visit_block(b);
    scan.exits
}

/// Whether evaluating the expression can have an effect or fail (so `&&`/`||` must not
/// evaluate it eagerly).
pub(super) fn has_effects(e: &Expr) -> bool {
    struct V(bool);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr(&mut self, e: &'ast Expr) {
            match e {
                Expr::Call(_)
                | Expr::MethodCall(_)
                | Expr::Index(_)
                | Expr::Macro(_)
                | Expr::Assign(_)
                | Expr::Block(_)
                | Expr::If(_)
                | Expr::Match(_)
                | Expr::Loop(_)
                | Expr::While(_)
                | Expr::ForLoop(_) => self.0 = true,
                Expr::Binary(b) if matches!(b.op, syn::BinOp::Div(_) | syn::BinOp::Rem(_)) => self.0 = true,
                _ => syn::visit::visit_expr(self, e),
            }
        }
    }
    let mut v = V(false);
    v.visit_expr(e);
    v.0
}

/// The shape of the value a loop `break`s with: one kind per tuple field (a single kind
/// for a value that is not a tuple literal).
pub(super) fn break_value_shape(body: &syn::Block) -> Option<Vec<Kind>> {
    fn kind(e: &Expr) -> Kind {
        match e {
            Expr::Lit(l) => literal(&l.lit).kind,
            _ => Kind::Unknown,
        }
    }
    struct V(Option<Vec<Kind>>, usize);
    impl<'ast> Visit<'ast> for V {
        fn visit_expr_break(&mut self, b: &'ast syn::ExprBreak) {
            if self.1 == 0 && self.0.is_none() {
                if let Some(e) = b.expr.as_deref() {
                    self.0 = Some(match e {
                        Expr::Tuple(t) if !t.elems.is_empty() => t.elems.iter().map(kind).collect(),
                        other => vec![kind(other)],
                    });
                }
            }
        }
        fn visit_expr_loop(&mut self, e: &'ast syn::ExprLoop) {
            self.1 += 1;
            syn::visit::visit_expr_loop(self, e);
            self.1 -= 1;
        }
        fn visit_expr_while(&mut self, e: &'ast syn::ExprWhile) {
            self.1 += 1;
            syn::visit::visit_expr_while(self, e);
            self.1 -= 1;
        }
        fn visit_expr_for_loop(&mut self, e: &'ast syn::ExprForLoop) {
            self.1 += 1;
            syn::visit::visit_expr_for_loop(self, e);
            self.1 -= 1;
        }
        fn visit_expr_closure(&mut self, _: &'ast syn::ExprClosure) {}
    }
    let mut v = V(None, 0);
    v.visit_block(body);
    v.0
}
