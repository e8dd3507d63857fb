//! The arguments of `#[differentiable(...)]`.
//!
//! ```text
//! #[differentiable]                       // every float argument is active, order 2
//! #[differentiable(wrt(a, b))]            // gradients only for `a` and `b`
//! #[differentiable(order = 3)]            // third derivatives by nesting `grad!`
//! #[differentiable(custom_vjp = f_vjp)]   // the derivative is `f_vjp`'s, the body is not traced
//! #[differentiable(crate = crate)]        // generated paths for use inside adjoint itself
//! ```

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitInt, Path, Token};

/// The most derivative levels one function may ask for. Each level roughly doubles
/// the generated code, so the bound keeps compile times predictable.
pub const MAX_ORDER: u32 = 4;

/// The attribute keywords.
pub const WRT: &str = "wrt";
pub const ORDER: &str = "order";
pub const CRATE: &str = "crate";
pub const HIGHER_ORDER: &str = "higher_order";
pub const CUSTOM_VJP: &str = "custom_vjp";

#[derive(Default)]
pub struct Args {
    /// `wrt(a, b)`: the arguments the user-facing gradient is taken with respect to.
    pub wrt: Option<Vec<Ident>>,
    /// `order = N`, with the literal for error spans.
    pub order: Option<(u32, LitInt)>,
    /// `crate = path`: the path to the `adjoint` facade (or to the runtime crate).
    pub krate: Option<Path>,
    /// `higher_order = Bound` (on a trait; used by the runtime's rule traits): the
    /// derivative companions get a default body and `where Self: Bound`, so types whose
    /// rules have no derivatives of their own (tensors) implement only the rule, and
    /// differentiating through them is a type error at the use site.
    pub higher_order: Option<Path>,
    /// `custom_vjp = path`: the function's derivative is given by the user (see
    /// `expand::custom`).
    pub custom_vjp: Option<Path>,
}

impl Args {
    /// `crate = …` names where the runtime is: the attribute is on the runtime's own code
    /// (its rule traits and their implementations), not on a user's.
    pub fn in_runtime(&self) -> bool {
        self.krate.is_some()
    }
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let key: Ident = if input.peek(Token![crate]) {
                let kw: Token![crate] = input.parse()?;
                Ident::new(CRATE, kw.span)
            } else {
                input.parse()?
            };
            if key == WRT {
                if args.wrt.is_some() {
                    return Err(syn::Error::new(
                        key.span(),
                        "`wrt` is given twice; list every argument in one `wrt(...)`",
                    ));
                }
                let content;
                syn::parenthesized!(content in input);
                let names: Punctuated<Ident, Token![,]> = content.parse_terminated(Ident::parse, Token![,])?;
                if names.is_empty() {
                    return Err(syn::Error::new(
                        key.span(),
                        "`wrt()` is empty; name at least one argument, e.g. `wrt(x)`",
                    ));
                }
                args.wrt = Some(names.into_iter().collect());
            } else if key == ORDER {
                input.parse::<Token![=]>()?;
                let lit: LitInt = input.parse()?;
                let n: u32 = lit.base10_parse()?;
                if n == 0 || n > MAX_ORDER {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("`order` must be between 1 and {MAX_ORDER}: it is the highest derivative taken through this function"),
                    ));
                }
                args.order = Some((n, lit));
            } else if key == CUSTOM_VJP {
                input.parse::<Token![=]>()?;
                args.custom_vjp = Some(input.parse()?);
            } else if key == HIGHER_ORDER {
                input.parse::<Token![=]>()?;
                args.higher_order = Some(input.parse()?);
            } else if key == CRATE {
                input.parse::<Token![=]>()?;
                args.krate = Some(if input.peek(Token![crate]) {
                    let kw: Token![crate] = input.parse()?;
                    syn::parse_quote_spanned!(kw.span=> crate)
                } else {
                    input.parse()?
                });
            } else {
                return Err(syn::Error::new(
                    key.span(),
                    format!("unknown argument `{key}`: `#[differentiable]` accepts `wrt(a, b)`, `order = N` and `custom_vjp = f_vjp`"),
                ));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}
