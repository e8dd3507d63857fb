//! `#[derive(Differentiable)]`: a struct of parameters, tensors, floats and other such
//! structs becomes a differentiable value.
//!
//! For `struct Net { fc1: Linear, fc2: Linear, scale: f32, depth: usize }` this
//! generates `NetTangent { fc1: LinearTangent, fc2: LinearTangent, scale: f32, depth: () }`
//! (the gradient has the struct's shape), the `Tangent`, `ZeroTangent` and `Primal`
//! impls of `Net`, `Adjoint` for `NetTangent`, and `Differentiable` for `Net`: the walk
//! over the parameters (`fc1.weight`, `fc1.bias`, … in field order) and the deposit of
//! a gradient into them.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Data, DeriveInput, Fields, Ident, Type};

/// `#[adjoint(crate = path)]`: where the runtime's items are (`::adjoint` by default).
fn crate_path(input: &DeriveInput) -> syn::Result<syn::Path> {
    let mut krate: syn::Path = syn::parse_quote!(::adjoint);
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("adjoint")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                krate = meta.value()?.parse()?;
                Ok(())
            } else {
                Err(meta.error("`#[adjoint(...)]` accepts only `crate = path`"))
            }
        })?;
    }
    Ok(krate)
}

/// Integer and boolean fields carry no gradient and hold no parameter.
fn is_discrete(ty: &Type) -> bool {
    const NAMES: &[&str] =
        &["bool", "usize", "isize", "u8", "u16", "u32", "u64", "u128", "i8", "i16", "i32", "i64", "i128"];
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.get_ident().is_some_and(|i| NAMES.contains(&i.to_string().as_str())))
}

/// Float fields carry a gradient but hold no parameter.
fn is_float(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.path.is_ident("f32") || p.path.is_ident("f64"))
}

/// Values that carry a gradient but hold no parameter: floats, and vectors, arrays and
/// tuples of them, nalgebra matrices and vectors.
fn is_plain(ty: &Type) -> bool {
    const NALGEBRA: &[&str] = &[
        "Vector1", "Vector2", "Vector3", "Vector4", "Vector5", "Vector6", "Point1", "Point2", "Point3", "Matrix1",
        "Matrix2", "Matrix3", "Matrix4", "Matrix5", "Matrix6", "SVector", "SMatrix", "DVector", "DMatrix", "Matrix",
    ];
    match ty {
        Type::Array(a) => is_plain(&a.elem),
        Type::Tuple(t) => !t.elems.is_empty() && t.elems.iter().all(|e| is_plain(e) || is_discrete(e)),
        Type::Paren(p) => is_plain(&p.elem),
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else { return false };
            let name = last.ident.to_string();
            if is_float(ty) || NALGEBRA.contains(&name.as_str()) {
                return true;
            }
            match (&*name, &last.arguments) {
                ("Vec", syn::PathArguments::AngleBracketed(args)) => {
                    matches!(args.args.first(), Some(syn::GenericArgument::Type(elem)) if is_plain(elem))
                }
                _ => false,
            }
        }
        _ => false,
    }
}

pub fn derive(input: DeriveInput) -> syn::Result<TokenStream> {
    let krate = crate_path(&input)?;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "`#[derive(Differentiable)]` applies to structs; wrap the alternatives of an enum in separate structs",
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "`#[derive(Differentiable)]` needs named fields (the parameter paths are the field names)",
        ));
    };
    let name = &input.ident;
    let vis = &input.vis;
    let tangent = format_ident!("{}Tangent", name);
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();

    let fields: Vec<(&Ident, &Type)> =
        named.named.iter().map(|f| (f.ident.as_ref().expect("named field"), &f.ty)).collect();
    let tangent_fields = named.named.iter().map(|field| {
        let (fvis, f, ty) = (&field.vis, &field.ident, &field.ty);
        if is_discrete(ty) {
            quote!(#fvis #f: ())
        } else {
            quote!(#fvis #f: <#ty as #krate::Tangent>::Tangent)
        }
    });
    let zero_fields = fields.iter().map(|(f, ty)| {
        if is_discrete(ty) {
            quote!(#f: ())
        } else {
            quote!(#f: #krate::ZeroTangent::zero_tangent(&self.#f))
        }
    });
    let names: Vec<&Ident> = fields.iter().map(|(f, _)| *f).collect();
    let holders: Vec<(&Ident, &Type)> =
        fields.iter().copied().filter(|(_, ty)| !is_discrete(ty) && !is_plain(ty)).collect();
    let collect = holders.iter().map(|(f, _)| {
        let path = f.to_string();
        quote!(#krate::Differentiable::collect_params(&self.#f, &#krate::join_path(prefix, #path), out);)
    });
    let deposit = holders.iter().map(|(f, _)| quote!(#krate::Differentiable::deposit(&self.#f, &grad.#f);));
    // A struct of plain values (a state, a set of coefficients) has gradients but holds
    // no parameters: `grad!` returns its gradient, `backward!` has nowhere to put it
    // (like a `&Tensor` of data).
    let param = match holders.first() {
        Some((_, first_holder)) => quote!(<#first_holder as #krate::Differentiable>::Param),
        None => quote!(()),
    };
    let doc = format!("The gradient of a [`{name}`]: one gradient per field.");
    Ok(quote! {
        #[doc = #doc]
        #[derive(Clone, Debug)]
        #vis struct #tangent #impl_generics #where_clause {
            #(#tangent_fields,)*
        }

        impl #impl_generics #krate::Tangent for #name #ty_generics #where_clause {
            type Tangent = #tangent #ty_generics;
        }

        impl #impl_generics #krate::ZeroTangent for #name #ty_generics #where_clause {
            fn zero_tangent(&self) -> #tangent #ty_generics {
                #tangent { #(#zero_fields,)* }
            }
        }

        // The gradient is itself differentiable (a cotangent argument of a derivative
        // that is differentiated again): its own tangent.
        impl #impl_generics #krate::Tangent for #tangent #ty_generics #where_clause {
            type Tangent = Self;
        }

        impl #impl_generics #krate::ZeroTangent for #tangent #ty_generics #where_clause {
            fn zero_tangent(&self) -> Self {
                #krate::Adjoint::zero_like(self)
            }
        }

        impl #impl_generics #krate::Primal for #tangent #ty_generics #where_clause {
            type Value = Self;
            fn primal(&self) -> &Self {
                self
            }
        }

        impl #impl_generics #krate::Adjoint for #tangent #ty_generics #where_clause {
            fn zero_like(&self) -> Self {
                #tangent { #(#names: #krate::Adjoint::zero_like(&self.#names),)* }
            }
            fn accumulate(&mut self, other: Self) {
                #(#krate::Adjoint::accumulate(&mut self.#names, other.#names);)*
            }
        }

        impl #impl_generics #krate::Primal for #name #ty_generics #where_clause {
            type Value = Self;
            fn primal(&self) -> &Self {
                self
            }
        }

        impl #impl_generics #krate::Differentiable for #name #ty_generics #where_clause {
            type Param = #param;
            #[allow(unused_variables)]
            fn collect_params(&self, prefix: &str, out: &mut ::std::vec::Vec<(::std::string::String, Self::Param)>) {
                #(#collect)*
            }
            #[allow(unused_variables)]
            fn deposit(&self, grad: &#tangent #ty_generics) {
                #(#deposit)*
            }
        }
    })
}
