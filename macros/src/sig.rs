//! The typed view of a differentiable function's signature.
//!
//! The macro runs before type checking, so "is this argument differentiable?" is
//! answered from the written type: floats (`f32`, `f64`, a type parameter bounded by
//! `Float`), containers of floats (`&[f64]`, `Vec<f64>`, `[f64; N]`), tuples of those,
//! and the runtime's differentiable types are active; integers, `bool` and every other
//! type are passed through untouched.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, Type};

use crate::ctxt::Ctxt;
use crate::ir::{Elem, Kind};

/// What the written type of a value says about it.
#[derive(Clone, Debug, PartialEq)]
pub enum Class {
    /// A scalar float.
    Float,
    /// A container of floats indexed with `[]`.
    FloatBuffer,
    /// A container of differentiable containers (`&[Vec<f64>]`, `[[f64; 2]; 4]`,
    /// `Vec<DVector<f64>>`): a buffer whose elements' type the macro does not look into,
    /// and whose gradient has the same nesting.
    NestedBuffer,
    /// A container of borrowed rows (`&[&[f64]]`): read like a buffer of rows, but
    /// without a gradient (the gradient of a row would have to be owned).
    BorrowedRows,
    /// A container of integers.
    IntBuffer,
    Int,
    Bool,
    Tuple(Vec<Class>),
    /// A differentiable value the macro cannot look into (tensors, matrices, generics).
    Opaque,
    /// A value that is never differentiated (strings, user structs, options, …).
    Inactive,
}

impl Class {
    pub fn differentiable(&self) -> bool {
        match self {
            Class::Float | Class::FloatBuffer | Class::NestedBuffer | Class::Opaque => true,
            Class::Tuple(items) => items.iter().any(Class::differentiable),
            _ => false,
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Class::Float => Kind::Float,
            Class::FloatBuffer => Kind::Buffer(Elem::Float),
            Class::NestedBuffer | Class::BorrowedRows => Kind::Buffer(Elem::Unknown),
            Class::IntBuffer => Kind::Buffer(Elem::Int),
            Class::Int => Kind::Int,
            Class::Bool => Kind::Bool,
            Class::Tuple(_) | Class::Opaque | Class::Inactive => Kind::Unknown,
        }
    }

    pub fn is_integer_like(&self) -> bool {
        matches!(self, Class::Int | Class::Bool | Class::IntBuffer)
    }
}

/// One parameter of a differentiable function.
#[derive(Clone)]
pub struct ParamSig {
    /// The pattern as written (an identifier or a tuple pattern).
    pub pat: Pat,
    pub ty: Type,
    pub class: Class,
    /// `#[no_grad]` was written on the parameter.
    pub no_grad: bool,
    /// Written `mut x` (the body may reassign it).
    pub mutable: bool,
    /// The parameter is the method receiver (`&self`, `self`); in the IR it is `this`.
    pub receiver: Option<syn::Receiver>,
    /// The span of the whole parameter, for errors.
    pub span: Span,
}

impl ParamSig {
    /// The parameter's name when it is a plain identifier.
    pub fn ident(&self) -> Option<&Ident> {
        match &self.pat {
            Pat::Ident(p) => Some(&p.ident),
            _ => None,
        }
    }

    /// Whether derivative code treats this parameter as an input of the derivative.
    pub fn active(&self) -> bool {
        !self.no_grad && self.class.differentiable()
    }
}

#[derive(Clone)]
pub struct Signature {
    pub ident: Ident,
    pub vis: syn::Visibility,
    pub generics: syn::Generics,
    pub params: Vec<ParamSig>,
    /// The return type; `None` for `()`.
    pub output: Option<Type>,
    pub output_class: Class,
    /// Type parameters bounded by `Float` (their values are scalars).
    pub float_params: Vec<Ident>,
}

/// The attribute that excludes a parameter from differentiation.
pub const NO_GRAD: &str = "no_grad";

impl Signature {
    pub fn parse(sig: &syn::Signature, vis: &syn::Visibility, cx: &mut Ctxt) -> Signature {
        Signature::parse_in(sig, vis, &[], false, cx)
    }

    /// Parse a signature inside an item whose own type parameters bounded by `Float`
    /// are `outer_floats` (the generics of an `impl` or a trait). Inside traits and
    /// impls (`opaque_by_default`), a type the macro cannot see is differentiable, so a
    /// trait's companion signatures and its implementations' always agree.
    pub fn parse_in(
        sig: &syn::Signature,
        vis: &syn::Visibility,
        outer_floats: &[Ident],
        opaque_by_default: bool,
        cx: &mut Ctxt,
    ) -> Signature {
        if let Some(c) = &sig.constness {
            cx.error_spanned_by(c, "a `const fn` cannot be differentiable: remove `const`");
        }
        if let Some(a) = &sig.asyncness {
            cx.error_spanned_by(
                a,
                "an `async fn` cannot be differentiable: compute the value in a synchronous function",
            );
        }
        if let Some(u) = &sig.unsafety {
            cx.error_spanned_by(
                u,
                "an `unsafe fn` cannot be differentiable: move the unsafe part out of the differentiated code",
            );
        }
        if let Some(abi) = &sig.abi {
            cx.error_spanned_by(abi, "an `extern` function cannot be differentiable");
        }
        if let Some(v) = &sig.variadic {
            cx.error_spanned_by(v, "a variadic function cannot be differentiable");
        }
        let mut float_params = float_type_params(&sig.generics);
        float_params.extend(outer_floats.iter().cloned());
        let mut params = Vec::new();
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(r) => {
                    if let Some(m) = &r.mutability {
                        cx.error_spanned_by(
                            m,
                            "a `&mut self` method cannot be differentiable: take `&self` and return the result",
                        );
                    }
                    let ty: Type = match &r.reference {
                        Some(_) => syn::parse_quote_spanned!(r.self_token.span=> &Self),
                        None => syn::parse_quote_spanned!(r.self_token.span=> Self),
                    };
                    params.push(ParamSig {
                        pat: syn::parse_quote_spanned!(r.self_token.span=> this),
                        ty,
                        class: Class::Opaque,
                        no_grad: false,
                        mutable: false,
                        receiver: Some(r.clone()),
                        span: r.span(),
                    });
                }
                FnArg::Typed(pt) => {
                    let no_grad = pt.attrs.iter().any(|a| a.path().is_ident(NO_GRAD));
                    for a in &pt.attrs {
                        if !a.path().is_ident(NO_GRAD) {
                            cx.error_spanned_by(
                                a,
                                "only `#[no_grad]` is allowed on a parameter of a differentiable function",
                            );
                        }
                    }
                    check_pattern(&pt.pat, cx);
                    let mut class = classify(&pt.ty, &float_params, cx);
                    if opaque_by_default && class == Class::Inactive {
                        class = Class::Opaque;
                    }
                    if class == Class::BorrowedRows && !no_grad {
                        cx.error_spanned_by(
                            &pt.ty,
                            "a buffer of borrowed slices cannot carry a gradient: take owned rows (`&[Vec<f64>]`, `&[[f64; N]]`), or mark the parameter `#[no_grad]` if it is data",
                        );
                    }
                    let mutable = matches!(&*pt.pat, Pat::Ident(p) if p.mutability.is_some());
                    params.push(ParamSig {
                        mutable,
                        receiver: None,
                        pat: strip_mut((*pt.pat).clone()),
                        ty: (*pt.ty).clone(),
                        class,
                        no_grad,
                        span: pt.span(),
                    });
                }
            }
        }
        let (output, output_class) = match &sig.output {
            syn::ReturnType::Default => (None, Class::Inactive),
            syn::ReturnType::Type(_, ty) => {
                let mut class = classify(ty, &float_params, cx);
                if opaque_by_default && class == Class::Inactive {
                    class = Class::Opaque;
                }
                (Some((**ty).clone()), class)
            }
        };
        Signature {
            ident: sig.ident.clone(),
            vis: vis.clone(),
            generics: sig.generics.clone(),
            params,
            output,
            output_class,
            float_params,
        }
    }

    /// The return type as tokens (`()` when there is none).
    pub fn output_type(&self) -> Type {
        self.output.clone().unwrap_or_else(|| syn::parse_quote!(()))
    }
}

/// Bindings in parameters must be plain names or tuples of names.
fn check_pattern(pat: &Pat, cx: &mut Ctxt) {
    match pat {
        Pat::Ident(p) => {
            if let Some(r) = &p.by_ref {
                cx.error_spanned_by(r, "`ref` bindings are not supported in a differentiable signature");
            }
            if let Some((_, sub)) = &p.subpat {
                cx.error_spanned_by(sub, "sub-patterns are not supported in a differentiable signature");
            }
        }
        Pat::Tuple(t) => t.elems.iter().for_each(|p| check_pattern(p, cx)),
        Pat::Wild(_) => {}
        other => cx.error_spanned_by(other, "only names and tuples of names are supported as parameters"),
    }
}

/// `mut x` in a parameter only matters to the primal body; the IR decides mutability.
fn strip_mut(pat: Pat) -> Pat {
    match pat {
        Pat::Ident(mut p) => {
            p.mutability = None;
            Pat::Ident(p)
        }
        Pat::Tuple(mut t) => {
            t.elems = t.elems.into_iter().map(strip_mut).collect();
            Pat::Tuple(t)
        }
        other => other,
    }
}

/// Type parameters with a bound whose last segment is `Float`.
pub fn float_type_params(generics: &syn::Generics) -> Vec<Ident> {
    let mut out = Vec::new();
    let is_float_bound = |b: &syn::TypeParamBound| match b {
        syn::TypeParamBound::Trait(t) => t.path.segments.last().is_some_and(|s| s.ident == "Float"),
        _ => false,
    };
    for p in generics.type_params() {
        if p.bounds.iter().any(is_float_bound) {
            out.push(p.ident.clone());
        }
    }
    if let Some(wc) = &generics.where_clause {
        for pred in &wc.predicates {
            if let syn::WherePredicate::Type(pt) = pred {
                if let Type::Path(tp) = &pt.bounded_ty {
                    if let Some(id) = tp.path.get_ident() {
                        if pt.bounds.iter().any(is_float_bound) {
                            out.push(id.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

const INT_TYPES: &[&str] = &["usize", "isize", "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128"];
const FLOAT_TYPES: &[&str] = &["f32", "f64"];
/// Standard and runtime types that never carry a derivative.
const INACTIVE_TYPES: &[&str] = &[
    "String",
    "str",
    "char",
    "Option",
    "Result",
    "Box",
    "Rc",
    "Arc",
    "HashMap",
    "BTreeMap",
    "HashSet",
    "BTreeSet",
    "Range",
    "RangeInclusive",
    "Duration",
    "Instant",
    "Path",
    "PathBuf",
    "Cow",
    "Rng",
    "Ordering",
    "Formatter",
];

/// Types of the runtime (and of nalgebra) whose values carry derivatives.
const DIFFERENTIABLE_TYPES: &[&str] = &[
    "Tensor",
    "Param",
    "DMatrix",
    "DVector",
    "SMatrix",
    "SVector",
    "Matrix",
    "Vector",
    "RowDVector",
    "RowSVector",
    "Matrix2",
    "Matrix3",
    "Matrix4",
    "Vector2",
    "Vector3",
    "Vector4",
    "Self",
];

pub fn is_int_name(name: &str) -> bool {
    INT_TYPES.contains(&name)
}

pub fn is_float_name(name: &str) -> bool {
    FLOAT_TYPES.contains(&name)
}

/// Classify a written type.
pub fn classify(ty: &Type, float_params: &[Ident], cx: &mut Ctxt) -> Class {
    match ty {
        Type::Reference(r) => {
            if let Some(m) = &r.mutability {
                cx.error_spanned_by(
                    m,
                    "`&mut` arguments other than buffers (`&mut [f64]`, `&mut Vec<f64>`) are not supported by `#[differentiable]`: take the value and return the result instead",
                );
                return Class::Inactive;
            }
            match &*r.elem {
                Type::Slice(s) => buffer_of(&s.elem, float_params, cx),
                other => classify(other, float_params, cx),
            }
        }
        Type::Paren(p) => classify(&p.elem, float_params, cx),
        Type::Group(g) => classify(&g.elem, float_params, cx),
        Type::Array(a) => buffer_of(&a.elem, float_params, cx),
        Type::Slice(s) => buffer_of(&s.elem, float_params, cx),
        Type::Tuple(t) if t.elems.is_empty() => Class::Inactive,
        Type::Tuple(t) => Class::Tuple(t.elems.iter().map(|e| classify(e, float_params, cx)).collect()),
        Type::Ptr(p) => {
            cx.error_spanned_by(p, "raw pointers are not supported by `#[differentiable]`: pass a slice or a value");
            Class::Inactive
        }
        Type::Path(tp) if tp.qself.is_none() => {
            let Some(last) = tp.path.segments.last() else {
                return Class::Inactive;
            };
            let name = last.ident.to_string();
            if tp.path.segments.len() == 1 && float_params.contains(&last.ident) {
                return Class::Float;
            }
            if is_float_name(&name) {
                return Class::Float;
            }
            if is_int_name(&name) {
                return Class::Int;
            }
            if name == "bool" {
                return Class::Bool;
            }
            if name == "Vec" {
                if let syn::PathArguments::AngleBracketed(args) = &last.arguments {
                    if let Some(syn::GenericArgument::Type(elem)) = args.args.first() {
                        return buffer_of(elem, float_params, cx);
                    }
                }
                return Class::Inactive;
            }
            if DIFFERENTIABLE_TYPES.contains(&name.as_str()) {
                return Class::Opaque;
            }
            // A type parameter that is not bounded by `Float` is still a value the caller
            // may want derivatives of (e.g. a tensor type); its rules are found by rustc.
            if tp.path.segments.len() == 1 && last.arguments.is_empty() && is_type_param_like(&name) {
                return Class::Opaque;
            }
            if INACTIVE_TYPES.contains(&name.as_str()) {
                return Class::Inactive;
            }
            // Any other named type (a model with `#[derive(Differentiable)]`, a layer) is
            // differentiated as a whole through its `Tangent` implementation; a type
            // without one is a type error that `#[no_grad]` on the parameter fixes.
            Class::Opaque
        }
        Type::ImplTrait(i) => {
            cx.error_spanned_by(
                i,
                "`impl Trait` is not supported in a differentiable signature: use a named type parameter",
            );
            Class::Inactive
        }
        _ => Class::Inactive,
    }
}

/// Whether `ty` names a type of the user's (a struct, an enum), not one of the
/// runtime's or nalgebra's differentiable types nor a type parameter.
pub fn names_user_type(ty: &Type, generics: &syn::Generics) -> bool {
    match strip_ref(ty) {
        Type::Path(tp) if tp.qself.is_none() => tp.path.segments.last().is_some_and(|last| {
            let name = &last.ident;
            // A single letter (`T`, `F2`) is taken for a type parameter or an alias of one
            // of those types (`type T = Tensor<f64>`), as in `classify`.
            let param = tp.path.segments.len() == 1
                && (generics.type_params().any(|p| p.ident == *name)
                    || (last.arguments.is_empty() && is_type_param_like(&name.to_string())));
            !DIFFERENTIABLE_TYPES.contains(&name.to_string().as_str()) && !param && name != "Self"
        }),
        _ => false,
    }
}

/// A named type of the user's as a buffer's element (`Body` in `&[Body]`): not a float,
/// row, tuple, parameter or one of the runtime's types, nor (by its name) a type parameter.
fn is_user_elem(elem: &Type) -> bool {
    match elem {
        Type::Path(tp) if tp.qself.is_none() => tp.path.segments.last().is_some_and(|last| {
            let name = last.ident.to_string();
            let known = is_float_name(&name)
                || is_int_name(&name)
                || ["Vec", "Param", "Self", "bool"].contains(&name.as_str())
                || DIFFERENTIABLE_TYPES.contains(&name.as_str())
                || INACTIVE_TYPES.contains(&name.as_str());
            let param_like = tp.path.segments.len() == 1 && last.arguments.is_empty() && is_type_param_like(&name);
            !(known || param_like)
        }),
        _ => false,
    }
}

/// A single upper-case letter, optionally followed by digits: `T`, `F`, `E2`.
fn is_type_param_like(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_digit())
}

fn buffer_of(elem: &Type, float_params: &[Ident], cx: &mut Ctxt) -> Class {
    match classify(elem, float_params, cx) {
        Class::Float => Class::FloatBuffer,
        Class::Int | Class::Bool => Class::IntBuffer,
        // Owned rows (`Vec<f64>`, `[f64; 2]`, nested further) and the runtime's own
        // differentiable types: each element's adjoint is a value of the same type.
        Class::FloatBuffer | Class::NestedBuffer if !matches!(elem, Type::Reference(_)) => Class::NestedBuffer,
        Class::Opaque if is_own_tangent(elem) => Class::NestedBuffer,
        // Values of the user's types (`&[Body]`): each element's gradient is its
        // `Tangent` (the derive's tangent struct). A type without one is a type error
        // that `#[no_grad]` (or leaving it out of `wrt`) answers, never silent data.
        Class::Opaque if is_user_elem(elem) => Class::NestedBuffer,
        // Tuples of floats (`&[(f64, f64)]`): each element is its own adjoint.
        Class::Tuple(items) if items.iter().all(|c| *c == Class::Float) => Class::NestedBuffer,
        Class::FloatBuffer | Class::NestedBuffer | Class::BorrowedRows => Class::BorrowedRows,
        _ => Class::Inactive,
    }
}

/// The type of the gradient of a value of type `ty` (`()` when it has none). With
/// `tangent`, a value of a type the macro cannot see has the gradient type its
/// `Tangent` implementation names (a struct's gradient is its generated tangent struct);
/// without it (inside the runtime's rule traits), it is the type itself.
pub fn grad_type(ty: &Type, class: &Class, tangent: Option<&syn::Path>) -> Type {
    match class {
        Class::Opaque => {
            let t = strip_ref(ty);
            match tangent {
                Some(krate) if !is_own_tangent(t) => {
                    syn::parse_quote_spanned!(t.span()=> <#t as #krate::__private::Tangent>::Tangent)
                }
                _ => t.clone(),
            }
        }
        Class::Float => strip_ref(ty).clone(),
        Class::FloatBuffer => {
            let elem = buffer_elem(ty);
            match strip_ref(ty) {
                Type::Array(a) => Type::Array(a.clone()),
                _ => syn::parse_quote_spanned!(ty.span()=> ::std::vec::Vec<#elem>),
            }
        }
        // The elements are owned rows or the runtime's own types: their own gradient type.
        Class::NestedBuffer => {
            let elem = buffer_elem(ty);
            let elem = match tangent {
                Some(krate) if is_user_elem(&elem) => {
                    syn::parse_quote_spanned!(elem.span()=> <#elem as #krate::__private::Tangent>::Tangent)
                }
                _ => elem,
            };
            match strip_ref(ty) {
                Type::Array(a) => Type::Array(a.clone()),
                _ => syn::parse_quote_spanned!(ty.span()=> ::std::vec::Vec<#elem>),
            }
        }
        Class::Tuple(items) => {
            let Type::Tuple(t) = strip_ref(ty) else {
                return syn::parse_quote!(());
            };
            let elems = t.elems.iter().zip(items).map(|(t, c)| grad_type(t, c, tangent));
            syn::parse_quote!((#(#elems,)*))
        }
        _ => syn::parse_quote!(()),
    }
}

pub fn strip_ref(ty: &Type) -> &Type {
    match ty {
        Type::Reference(r) => strip_ref(&r.elem),
        Type::Paren(p) => strip_ref(&p.elem),
        Type::Group(g) => strip_ref(&g.elem),
        other => other,
    }
}

/// The element type of a buffer type.
pub fn buffer_elem(ty: &Type) -> Type {
    match strip_ref(ty) {
        Type::Slice(s) => (*s.elem).clone(),
        Type::Array(a) => (*a.elem).clone(),
        Type::Path(tp) => {
            if let Some(syn::PathArguments::AngleBracketed(args)) = tp.path.segments.last().map(|s| &s.arguments) {
                if let Some(syn::GenericArgument::Type(elem)) = args.args.first() {
                    return elem.clone();
                }
            }
            syn::parse_quote!(f64)
        }
        _ => syn::parse_quote!(f64),
    }
}

pub fn type_string(ty: &Type) -> String {
    ty.to_token_stream().to_string().replace(" < ", "<").replace(" >", ">").replace("& ", "&").replace(" ,", ",")
}

/// Types whose gradient has their own type (tensors, matrices), written as such.
fn is_own_tangent(ty: &Type) -> bool {
    match ty {
        Type::Path(tp) => tp.path.segments.last().is_some_and(|s| {
            let n = s.ident.to_string();
            n != "Param" && n != "Self" && DIFFERENTIABLE_TYPES.contains(&n.as_str())
        }),
        _ => false,
    }
}
