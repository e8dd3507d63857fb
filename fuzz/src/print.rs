//! Programs as Rust source: the functions (each `#[differentiable]`), and the harness
//! entry point `run` that checks them (see `harness.rs`).

use std::fmt::Write;

use crate::ast::*;

/// The order each function is given, so that every derivative the harness and the
/// nested `grad!` calls take exists: the entry function is differentiated twice when
/// the second order is checked (it then also takes one of its own, when it nests), a
/// helper whose `grad!` the entry takes once more.
fn orders(p: &Program) -> (Option<u32>, Vec<Option<u32>>) {
    let nested = p.nested_callees();
    let entry_nests = !nested.is_empty();
    let entry = match (entry_nests, p.second_order) {
        (true, true) => Some(2),
        _ => None,
    };
    // The helpers a third-order helper calls need the third order too.
    let mut third: Vec<String> = if p.second_order { nested } else { Vec::new() };
    loop {
        let mut grew = false;
        let callers: Vec<&Func> = p.helpers.iter().filter(|h| third.contains(&h.name)).collect();
        for h in callers {
            let mut text = String::new();
            func(&mut text, h, None);
            for g in &p.helpers {
                if !third.contains(&g.name) && calls(&text, &g.name) {
                    third.push(g.name.clone());
                    grew = true;
                }
            }
        }
        if !grew {
            break;
        }
    }
    let helpers = p.helpers.iter().map(|h| third.contains(&h.name).then_some(3)).collect();
    (entry, helpers)
}

/// Whether the source `text` calls the function `name` (`name(` after a non-identifier).
fn calls(text: &str, name: &str) -> bool {
    let pattern = format!("{name}(");
    text.match_indices(&pattern)
        .any(|(at, _)| !text[..at].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_'))
}

/// The module of one program: its functions and `run`.
pub fn module(p: &Program) -> String {
    let mut out = String::new();
    out.push_str("use adjoint::prelude::*;\n\n");
    let (entry_order, helper_orders) = orders(p);
    for (h, order) in p.helpers.iter().zip(helper_orders) {
        func(&mut out, h, order);
    }
    func(&mut out, &p.entry, entry_order);
    harness(&mut out, p);
    out
}

/// The functions alone (for reports of findings).
pub fn functions(p: &Program) -> String {
    let mut out = String::new();
    let (entry_order, helper_orders) = orders(p);
    for (h, order) in p.helpers.iter().zip(helper_orders) {
        func(&mut out, h, order);
    }
    func(&mut out, &p.entry, entry_order);
    if p.second_order {
        second_order_fn(&mut out, p);
    }
    out
}

/// The names of `f` that are references already (`&[f64]`, `&[Vec<f64>]`, `&Vec<f64>`):
/// its slice parameters, named sub-slices and rows; they are passed and iterated as
/// they are, not borrowed again.
fn references(f: &Func) -> Vec<String> {
    let mut out: Vec<String> = f.params.iter().filter(|p| p.ty != PTy::Scalar).map(|p| p.name.clone()).collect();
    walk_block(&f.body, &mut |s| match s {
        Stmt::SubSlice { name, .. } | Stmt::RowRef { name, .. } => out.push(name.clone()),
        Stmt::For { head: ForHead::Rows { row, .. }, .. } => out.push(row.clone()),
        _ => {}
    });
    out
}

fn func(out: &mut String, f: &Func, order: Option<u32>) {
    let refs = references(f);
    let pr = Printer { params: &refs };
    match order {
        Some(n) => writeln!(out, "#[differentiable(order = {n})]").unwrap(),
        None => out.push_str("#[differentiable]\n"),
    }
    let ps = param_list(f);
    writeln!(out, "pub fn {}({ps}) -> f64 {{", f.name).unwrap();
    pr.block(out, &f.body, 1);
    writeln!(out, "    {}", pr.expr(&f.ret)).unwrap();
    out.push_str("}\n\n");
}

/// The arguments of a call of `f` from the harness's `s` (scalars), `v` (slices) and
/// `m` (buffers of rows).
fn harness_args(f: &Func) -> String {
    let (mut si, mut vi, mut mi) = (0, 0, 0);
    let args: Vec<String> = f
        .params
        .iter()
        .map(|p| match p.ty {
            PTy::Scalar => {
                si += 1;
                format!("s[{}]", si - 1)
            }
            PTy::Slice => {
                vi += 1;
                format!("&v[{}]", vi - 1)
            }
            PTy::Rows => {
                mi += 1;
                format!("&m[{}]", mi - 1)
            }
        })
        .collect();
    args.join(", ")
}

/// Statements pushing the gradients bound to `g` (`grad!`'s result) onto `out`.
fn flatten(f: &Func, g: &str) -> String {
    let n = f.params.len();
    let mut s = String::new();
    for (i, p) in f.params.iter().enumerate() {
        let item = if n == 1 { g.to_string() } else { format!("{g}.{i}") };
        match p.ty {
            PTy::Scalar => writeln!(s, "        out.push({item});").unwrap(),
            PTy::Slice => writeln!(s, "        out.extend_from_slice(&{item});").unwrap(),
            PTy::Rows => {
                writeln!(s, "        for row in &{item} {{\n            out.extend_from_slice(row);\n        }}")
                    .unwrap()
            }
        }
    }
    s
}

/// `a: f64, x: &[f64]`: a function's parameter list.
fn param_list(f: &Func) -> String {
    let ps: Vec<String> = f
        .params
        .iter()
        .map(|p| match p.ty {
            PTy::Scalar => format!("{}: f64", p.name),
            PTy::Slice => format!("{}: &[f64]", p.name),
            PTy::Rows => format!("{}: &[Vec<f64>]", p.name),
        })
        .collect();
    ps.join(", ")
}

/// `d_f`: a scalar function of `f`'s gradient, whose own gradient is a second derivative.
fn second_order_fn(out: &mut String, p: &Program) {
    let f = &p.entry;
    let ps = param_list(f);
    let args: Vec<&str> = f.params.iter().map(|p| p.name.as_str()).collect();
    let names: Vec<String> = (0..f.params.len()).map(|i| format!("g{i}")).collect();
    let pat = if names.len() == 1 { names[0].clone() } else { format!("({})", names.join(", ")) };
    let coefficients = [0.75, -1.25, 0.5, 1.5, -0.25];
    let terms: Vec<String> = f
        .params
        .iter()
        .zip(&names)
        .enumerate()
        .map(|(i, (p, g))| {
            let c = coefficients[i % coefficients.len()];
            match p.ty {
                PTy::Scalar => format!("{g} * {c:?}"),
                PTy::Slice => format!("({g}[0] + {g}.iter().sum::<f64>()) * {c:?}"),
                PTy::Rows => {
                    format!("({g}[0][1] + {g}.iter().map(|r| r.iter().sum::<f64>()).sum::<f64>()) * {c:?}")
                }
            }
        })
        .collect();
    writeln!(out, "#[differentiable]\npub fn d_f({ps}) -> f64 {{").unwrap();
    writeln!(out, "    let {pat} = grad!(f)({});", args.join(", ")).unwrap();
    writeln!(out, "    {}\n}}\n", terms.join(" + ")).unwrap();
}

fn harness(out: &mut String, p: &Program) {
    let f = &p.entry;
    let layout: Vec<&str> = f
        .params
        .iter()
        .map(|p| match p.ty {
            PTy::Scalar => "crate::harness::P::Scalar",
            PTy::Slice => "crate::harness::P::Slice",
            PTy::Rows => "crate::harness::P::Rows",
        })
        .collect();
    let args = harness_args(f);
    if p.second_order {
        second_order_fn(out, p);
    }
    writeln!(out, "pub fn run(case: u64) -> crate::harness::Report {{").unwrap();
    writeln!(out, "    let layout = [{}];", layout.join(", ")).unwrap();
    writeln!(out, "    let value = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| f({args});").unwrap();
    writeln!(
        out,
        "    let gradient = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {{\n        let g = grad!(f)({args});\n        let mut out = Vec::new();\n{}        out\n    }};",
        flatten(f, "g")
    )
    .unwrap();
    writeln!(
        out,
        "    let both = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {{\n        let (value, g) = value_and_grad!(f)({args});\n        let mut out = Vec::new();\n{}        (value, out)\n    }};",
        flatten(f, "g")
    )
    .unwrap();
    if p.second_order {
        writeln!(out, "    let second = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| d_f({args});").unwrap();
        writeln!(
            out,
            "    let second_gradient = |s: &[f64], v: &[Vec<f64>], m: &[Vec<Vec<f64>>]| {{\n        let g = grad!(d_f)({args});\n        let mut out = Vec::new();\n{}        out\n    }};",
            flatten(f, "g")
        )
        .unwrap();
        writeln!(
            out,
            "    crate::harness::check(&layout, case, &value, &gradient, &both, Some((&second, &second_gradient)))"
        )
        .unwrap();
    } else {
        writeln!(out, "    crate::harness::check(&layout, case, &value, &gradient, &both, None)").unwrap();
    }
    out.push_str("}\n");
}

struct Printer<'a> {
    /// The slice parameters of the function (passed as they are, not borrowed).
    params: &'a [String],
}

fn indent(out: &mut String, level: usize) {
    for _ in 0..level {
        out.push_str("    ");
    }
}

fn lit(v: f64) -> String {
    if v < 0.0 {
        format!("({v:?})")
    } else {
        format!("{v:?}")
    }
}

impl Printer<'_> {
    fn block(&self, out: &mut String, b: &[Stmt], level: usize) {
        for s in b {
            self.stmt(out, s, level);
        }
    }

    fn borrow(&self, name: &str) -> String {
        if self.params.iter().any(|p| p == name) {
            name.to_string()
        } else {
            format!("&{name}")
        }
    }

    fn stmt(&self, out: &mut String, s: &Stmt, level: usize) {
        indent(out, level);
        match s {
            Stmt::Let { name, mutable, value } => {
                let m = if *mutable { "mut " } else { "" };
                writeln!(out, "let {m}{name} = {};", self.expr(value)).unwrap();
            }
            Stmt::LetFold { name, of, product } => {
                let f = if *product { "product" } else { "sum" };
                writeln!(out, "let {name}: f64 = {of}.iter().{f}();").unwrap();
            }
            Stmt::Assign { name, op, value } => {
                writeln!(out, "{name} {} {};", aop(*op), self.expr(value)).unwrap();
            }
            Stmt::Buffer { name, mutable, init } => {
                let m = if *mutable { "mut " } else { "" };
                match init {
                    BufInit::Zeros(len) => writeln!(out, "let {m}{name} = vec![0.0; {}];", len_expr(len)).unwrap(),
                    BufInit::ArrayZeros(n) => writeln!(out, "let {m}{name} = [0.0; {n}];").unwrap(),
                    BufInit::Array(items) => {
                        writeln!(out, "let {m}{name} = [{}];", self.exprs(items)).unwrap();
                    }
                    BufInit::VecList(items) => {
                        writeln!(out, "let {m}{name} = vec![{}];", self.exprs(items)).unwrap();
                    }
                    BufInit::Copy(of) => writeln!(out, "let {m}{name} = {of}.to_vec();").unwrap(),
                    BufInit::Pushed(items) => {
                        writeln!(out, "let mut {name} = Vec::with_capacity({});", items.len()).unwrap();
                        for e in items {
                            indent(out, level);
                            writeln!(out, "{name}.push({});", self.expr(e)).unwrap();
                        }
                    }
                    BufInit::PushLoop { var, len, value } => {
                        writeln!(out, "let mut {name} = Vec::new();").unwrap();
                        indent(out, level);
                        writeln!(out, "for {var} in 0..{} {{", len_expr(len)).unwrap();
                        indent(out, level + 1);
                        writeln!(out, "{name}.push({});", self.expr(value)).unwrap();
                        indent(out, level);
                        out.push_str("}\n");
                    }
                }
            }
            Stmt::Store { buf, index, op, value } => {
                writeln!(out, "{buf}[{}] {} {};", idx(index), aop(*op), self.expr(value)).unwrap();
            }
            Stmt::If { .. } => self.if_chain(out, s, level),
            Stmt::Match { on, arms, default } => {
                writeln!(out, "match {on} {{").unwrap();
                for (p, b) in arms {
                    indent(out, level + 1);
                    let p = match p {
                        MatchPat::Lit(n) => n.to_string(),
                        MatchPat::Or(ns) => ns.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" | "),
                        MatchPat::Range(lo, hi) => format!("{lo}..={hi}"),
                    };
                    writeln!(out, "{p} => {{").unwrap();
                    self.block(out, b, level + 2);
                    indent(out, level + 1);
                    out.push_str("}\n");
                }
                indent(out, level + 1);
                out.push_str("_ => {\n");
                self.block(out, default, level + 2);
                indent(out, level + 1);
                out.push_str("}\n");
                indent(out, level);
                out.push_str("}\n");
            }
            Stmt::For { head, body, label } => {
                writeln!(out, "{}for {} {{", lab(label), self.head(head)).unwrap();
                self.block(out, body, level + 1);
                indent(out, level);
                out.push_str("}\n");
            }
            Stmt::While { counter, limit, extra, body, label } => {
                writeln!(out, "let mut {counter} = 0;").unwrap();
                indent(out, level);
                let l = lab(label);
                match extra {
                    Some(c) => writeln!(out, "{l}while {counter} < {limit} && {} {{", self.cond(c)).unwrap(),
                    None => writeln!(out, "{l}while {counter} < {limit} {{").unwrap(),
                }
                indent(out, level + 1);
                writeln!(out, "{counter} += 1;").unwrap();
                self.block(out, body, level + 1);
                indent(out, level);
                out.push_str("}\n");
            }
            Stmt::Loop { name, counter, limit, body, until, value } => {
                writeln!(out, "let mut {counter} = 0;").unwrap();
                indent(out, level);
                writeln!(out, "let {name} = loop {{").unwrap();
                indent(out, level + 1);
                writeln!(out, "{counter} += 1;").unwrap();
                self.block(out, body, level + 1);
                indent(out, level + 1);
                match until {
                    Some(c) => writeln!(out, "if {counter} >= {limit} || {} {{", self.cond(c)).unwrap(),
                    None => writeln!(out, "if {counter} >= {limit} {{").unwrap(),
                }
                indent(out, level + 2);
                writeln!(out, "break {};", self.expr(value)).unwrap();
                indent(out, level + 1);
                out.push_str("}\n");
                indent(out, level);
                out.push_str("};\n");
            }
            Stmt::PlainLoop { counter, limit, body, label } => {
                writeln!(out, "let mut {counter} = 0;").unwrap();
                indent(out, level);
                writeln!(out, "{}loop {{", lab(label)).unwrap();
                indent(out, level + 1);
                writeln!(out, "if {counter} >= {limit} {{ break; }}").unwrap();
                indent(out, level + 1);
                writeln!(out, "{counter} += 1;").unwrap();
                self.block(out, body, level + 1);
                indent(out, level);
                out.push_str("}\n");
            }
            Stmt::Drain { buf, var, counter, body, push, label } => {
                if push.is_some() {
                    writeln!(out, "let mut {counter} = 0;").unwrap();
                    indent(out, level);
                }
                writeln!(out, "{}while let Some({var}) = {buf}.pop() {{", lab(label)).unwrap();
                if push.is_some() {
                    indent(out, level + 1);
                    writeln!(out, "{counter} += 1;").unwrap();
                }
                self.block(out, body, level + 1);
                if let Some(p) = push {
                    indent(out, level + 1);
                    match &p.cond {
                        Some(c) => writeln!(out, "if {counter} < {} && {} {{", p.limit, self.cond(c)).unwrap(),
                        None => writeln!(out, "if {counter} < {} {{", p.limit).unwrap(),
                    }
                    indent(out, level + 2);
                    writeln!(out, "{buf}.push({});", self.expr(&p.value)).unwrap();
                    indent(out, level + 1);
                    out.push_str("}\n");
                }
                indent(out, level);
                out.push_str("}\n");
            }
            Stmt::Pop { name, buf, expect } => {
                let how = if *expect { ".expect(\"not empty\")" } else { ".unwrap()" };
                writeln!(out, "let {name} = {buf}.pop(){how};").unwrap();
            }
            Stmt::Sort { buf, how } => {
                let call = match how {
                    SortHow::Ascending => "sort_by(|a, b| a.partial_cmp(b).unwrap())",
                    SortHow::Descending => "sort_by(|a, b| b.partial_cmp(a).unwrap())",
                    SortHow::UnstableTotal => "sort_unstable_by(|a, b| a.total_cmp(b))",
                    SortHow::TotalPath => "sort_by(f64::total_cmp)",
                };
                writeln!(out, "{buf}.{call};").unwrap();
            }
            Stmt::Swap { buf, i, j } => writeln!(out, "{buf}.swap({}, {});", idx(i), idx(j)).unwrap(),
            Stmt::SubSlice { name, of, lo, hi } => {
                let lo = match lo {
                    SubLo::Const(0) => String::new(),
                    SubLo::Const(a) => a.to_string(),
                    SubLo::Half => format!("{of}.len() / 2"),
                };
                let hi = match hi {
                    SubHi::End => String::new(),
                    SubHi::Cut(0) => format!("{of}.len()"),
                    SubHi::Cut(k) => format!("{of}.len() - {k}"),
                    SubHi::Const(b) => b.to_string(),
                    SubHi::Half => format!("{of}.len() / 2"),
                };
                writeln!(out, "let {name} = &{of}[{lo}..{hi}];").unwrap();
            }
            Stmt::Rows { name, rows, cols, fill } => {
                writeln!(out, "let mut {name} = vec![vec![0.0; {}]; {}];", len_expr(cols), len_expr(rows)).unwrap();
                if let Some(Fill { i, j, value }) = fill {
                    indent(out, level);
                    writeln!(out, "for {i} in 0..{} {{", len_expr(rows)).unwrap();
                    indent(out, level + 1);
                    writeln!(out, "for {j} in 0..{} {{", len_expr(cols)).unwrap();
                    indent(out, level + 2);
                    writeln!(out, "{name}[{i}][{j}] = {};", self.expr(value)).unwrap();
                    indent(out, level + 1);
                    out.push_str("}\n");
                    indent(out, level);
                    out.push_str("}\n");
                }
            }
            Stmt::StoreRow { buf, row, col, op, value } => {
                writeln!(out, "{buf}[{}][{}] {} {};", idx(row), idx(col), aop(*op), self.expr(value)).unwrap();
            }
            Stmt::RowRef { name, of, index } => writeln!(out, "let {name} = &{of}[{}];", idx(index)).unwrap(),
            Stmt::Break(c, label) => writeln!(out, "if {} {{ break{}; }}", self.cond(c), target(label)).unwrap(),
            Stmt::Continue(c, label) => writeln!(out, "if {} {{ continue{}; }}", self.cond(c), target(label)).unwrap(),
            Stmt::Return(c, e) => writeln!(out, "if {} {{ return {}; }}", self.cond(c), self.expr(e)).unwrap(),
            Stmt::Nested { pat, value, callee, args } => {
                let mac = if *value { "value_and_grad" } else { "grad" };
                writeln!(out, "let {} = {mac}!({callee})({});", pattern(pat), self.args(args)).unwrap();
            }
            Stmt::Unpack { pat, from } => writeln!(out, "let {} = {from};", pattern(pat)).unwrap(),
            Stmt::Closure { name, param, body } => {
                writeln!(out, "let {name} = |{param}: f64| {};", self.expr(body)).unwrap()
            }
        }
    }

    /// `if … { } else if … { } else { }`: an `else` block holding only an `if` is
    /// printed as `else if`.
    fn if_chain(&self, out: &mut String, s: &Stmt, level: usize) {
        let Stmt::If { cond, then, els } = s else { unreachable!("an if") };
        writeln!(out, "if {} {{", self.cond(cond)).unwrap();
        self.block(out, then, level + 1);
        indent(out, level);
        match els.as_deref() {
            Some([inner @ Stmt::If { .. }]) => {
                out.push_str("} else ");
                self.if_chain(out, inner, level);
            }
            Some(e) => {
                out.push_str("} else {\n");
                self.block(out, e, level + 1);
                indent(out, level);
                out.push_str("}\n");
            }
            None => out.push_str("}\n"),
        }
    }

    fn head(&self, h: &ForHead) -> String {
        match h {
            ForHead::Range { var, lo, hi, inclusive, adapters } => {
                let dots = if *inclusive { "..=" } else { ".." };
                let mut r = format!("{lo}{dots}{}", len_expr(hi));
                if !adapters.is_empty() {
                    r = format!("({r})");
                    for a in adapters {
                        match a {
                            Adapter::Rev => r.push_str(".rev()"),
                            Adapter::StepBy(k) => write!(r, ".step_by({k})").unwrap(),
                        }
                    }
                }
                format!("{var} in {r}")
            }
            ForHead::Iter { elem, over, style, index, zip, rev } => {
                let (mut iter, elem_pat) = match style {
                    IterStyle::Iter => (format!("{over}.iter()"), format!("&{elem}")),
                    IterStyle::Borrow if index.is_none() && zip.is_none() && !*rev => {
                        (self.borrow(over), format!("&{elem}"))
                    }
                    IterStyle::Borrow => (format!("{over}.iter()"), format!("&{elem}")),
                    IterStyle::Copied => (format!("{over}.iter().copied()"), elem.clone()),
                };
                let mut pat = elem_pat;
                // `.enumerate()` first or `.zip(…)` first, by the names' order.
                let enumerate_first = match (index, zip) {
                    (Some(i), Some((_, e2))) => i < e2,
                    _ => true,
                };
                let mut links: Vec<String> = Vec::new();
                if let Some(i) = index.as_ref().filter(|_| enumerate_first) {
                    links.push(".enumerate()".into());
                    pat = format!("({i}, {pat})");
                }
                if let Some((other, e2)) = zip {
                    links.push(format!(".zip({other}.iter())"));
                    pat = format!("({pat}, &{e2})");
                }
                if let Some(i) = index.as_ref().filter(|_| !enumerate_first) {
                    links.push(".enumerate()".into());
                    pat = format!("({i}, {pat})");
                }
                if *rev {
                    links.push(".rev()".into());
                }
                for l in links {
                    iter.push_str(&l);
                }
                format!("{pat} in {iter}")
            }
            ForHead::Rows { row, over, index: None, iter: false } => format!("{row} in {}", self.borrow(over)),
            ForHead::Rows { row, over, index: None, iter: true } => format!("{row} in {over}.iter()"),
            ForHead::Rows { row, over, index: Some(i), .. } => format!("({i}, {row}) in {over}.iter().enumerate()"),
        }
    }

    fn exprs(&self, items: &[Expr]) -> String {
        items.iter().map(|e| self.expr(e)).collect::<Vec<_>>().join(", ")
    }

    fn args(&self, args: &[Arg]) -> String {
        args.iter()
            .map(|a| match a {
                Arg::Scalar(e) => self.expr(e),
                Arg::Slice(n) => self.borrow(n),
                Arg::Sub { of, lo, cut: 0 } => format!("&{of}[{lo}..]"),
                Arg::Sub { of, lo, cut } => format!("&{of}[{lo}..{of}.len() - {cut}]"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn cond(&self, c: &Cond) -> String {
        let op = match c.op {
            Cmp::Lt => "<",
            Cmp::Gt => ">",
            Cmp::Le => "<=",
            Cmp::Ge => ">=",
        };
        format!("{} {op} {}", self.expr(&c.lhs), self.expr(&c.rhs))
    }

    /// A method receiver: a constant needs its type (`0.5_f64.sin()`, `((0.1 % 0.7) as
    /// f64).tanh()`): rustc resolves no method on a float literal of unknown type.
    fn receiver(&self, e: &Expr) -> String {
        match e {
            Expr::Lit(v) => format!("({v:?}_f64)"),
            Expr::Var(_) | Expr::Elem(..) | Expr::Elem2(..) | Expr::Field(..) => self.expr(e),
            other if is_constant(other) => format!("({} as f64)", self.expr(other)),
            other => format!("({})", self.expr(other)),
        }
    }

    pub fn expr(&self, e: &Expr) -> String {
        match e {
            Expr::Lit(v) => lit(*v),
            Expr::Var(n) => n.clone(),
            Expr::Elem(n, i) => format!("{n}[{}]", idx(i)),
            Expr::Elem2(n, i, j) => format!("{n}[{}][{}]", idx(i), idx(j)),
            Expr::Bin(op, a, b) => {
                let op = match op {
                    BOp::Add => "+",
                    BOp::Sub => "-",
                    BOp::Mul => "*",
                    BOp::Div => "/",
                    BOp::Rem => "%",
                };
                format!("({} {op} {})", self.expr(a), self.expr(b))
            }
            Expr::Neg(a) => format!("(-{})", self.expr(a)),
            Expr::Unary(u, a) => format!("{}.{}()", self.receiver(a), u.name()),
            Expr::Binary(m, a, b) => format!("{}.{}({})", self.receiver(a), m.name(), self.expr(b)),
            Expr::Powi(a, k) => format!("{}.powi({k})", self.receiver(a)),
            Expr::MulAdd(a, b, c) => format!("{}.mul_add({}, {})", self.receiver(a), self.expr(b), self.expr(c)),
            Expr::Clamp(a, lo, hi) => format!("{}.clamp({}, {})", self.receiver(a), lit(*lo), lit(*hi)),
            Expr::Call(f, args) => format!("{f}({})", self.args(args)),
            Expr::Sum(n) => format!("{n}.iter().sum::<f64>()"),
            Expr::LenF(n) => format!("({n}.len() as f64)"),
            Expr::IntF(n) => format!("({n} as f64)"),
            Expr::Field(n, i) => format!("{n}.{i}"),
            Expr::IfExpr(c, a, b) => {
                format!("(if {} {{ {} }} else {{ {} }})", self.cond(c), self.expr(a), self.expr(b))
            }
            Expr::Detach(a) => format!("detach({})", self.expr(a)),
            Expr::MapSum { over, elem, zip: None, body } => {
                format!("{over}.iter().map(|&{elem}| {}).sum::<f64>()", self.expr(body))
            }
            Expr::MapSum { over, elem, zip: Some((other, elem2)), body } => {
                format!("{over}.iter().zip({other}.iter()).map(|(&{elem}, &{elem2})| {}).sum::<f64>()", self.expr(body))
            }
            Expr::Fold { over, init, acc, elem, body } => {
                format!("{over}.iter().fold({}, |{acc}: f64, &{elem}| {})", self.receiver(init), self.expr(body))
            }
            Expr::Apply(f, a) => format!("{f}({})", self.expr(a)),
        }
    }
}

fn pattern(p: &Pat) -> String {
    match p {
        Pat::Name(n) => n.clone(),
        Pat::Wild => "_".into(),
        Pat::Tuple(items) => format!("({})", items.iter().map(pattern).collect::<Vec<_>>().join(", ")),
    }
}

/// `'label: ` before a loop.
fn lab(label: &Option<String>) -> String {
    label.as_ref().map(|l| format!("'{l}: ")).unwrap_or_default()
}

/// ` 'label` after `break`/`continue`.
fn target(label: &Option<String>) -> String {
    label.as_ref().map(|l| format!(" '{l}")).unwrap_or_default()
}

fn aop(op: AOp) -> &'static str {
    match op {
        AOp::Set => "=",
        AOp::Add => "+=",
        AOp::Sub => "-=",
        AOp::Mul => "*=",
    }
}

fn len_expr(l: &LenExpr) -> String {
    match l {
        LenExpr::Const(n) => n.to_string(),
        LenExpr::LenOf(of, 0) => format!("{of}.len()"),
        LenExpr::LenOf(of, k) => format!("{of}.len() - {k}"),
    }
}

fn idx(i: &Idx) -> String {
    match i {
        Idx::Const(c) => c.to_string(),
        Idx::Var(v) => v.clone(),
        Idx::Prev(v) => format!("{v} - 1"),
        Idx::Next(v) => format!("{v} + 1"),
        Idx::Last(of) => format!("{of}.len() - 1"),
        Idx::Wrap { var, offset: 0, of } => format!("{var} % {of}.len()"),
        Idx::Wrap { var, offset, of } => format!("({var} + {offset}) % {of}.len()"),
    }
}
