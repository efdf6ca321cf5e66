//! The `#[bridge]` attribute of [async-bridge](https://docs.rs/async-bridge): a trait's
//! twin on the other side of the bridge.
//!
//! Use it through `async_bridge::bridge`, whose documentation is the reference (what is
//! generated, what is refused and why). The generated code names only
//! `::async_bridge::...` paths, so a crate using it needs no other dependency.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{
    Attribute, FnArg, Ident, ItemTrait, Lifetime, Pat, ReturnType, Signature, Token, TraitItem,
    TraitItemFn, Type, TypeParamBound,
};

/// (The attribute of the `async-bridge-macros` crate, re-exported by `async-bridge`.)
#[proc_macro_attribute]
pub fn bridge(attr: TokenStream, item: TokenStream) -> TokenStream {
    let args = match syn::parse::<Args>(attr) {
        Ok(args) => args,
        Err(err) => return with_error(item, err),
    };
    let original = match syn::parse::<ItemTrait>(item.clone()) {
        Ok(original) => original,
        Err(_) => {
            return with_error(
                item,
                syn::Error::new(
                    Span::call_site(),
                    "#[bridge] goes on a trait: `#[bridge(async = AsyncX)] trait X { .. }` or \
                     `#[bridge(blocking = BlockingY)] trait Y { .. }`",
                ),
            )
        }
    };
    expand(args, original).into()
}

fn with_error(item: TokenStream, err: syn::Error) -> TokenStream {
    let mut out = TokenStream2::from(item);
    out.extend(err.to_compile_error());
    out.into()
}

/// Which twin to generate.
enum Args {
    Async(Ident),
    Blocking(Ident),
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        const USAGE: &str = "expected `async = AsyncName` (the async twin of a sync trait) or \
                             `blocking = BlockingName` (the blocking twin of an async trait)";
        if input.is_empty() {
            return Err(input.error(USAGE));
        }
        let args = if input.peek(Token![async]) {
            input.parse::<Token![async]>()?;
            input.parse::<Token![=]>()?;
            Args::Async(input.parse()?)
        } else {
            let key: Ident = input
                .parse()
                .map_err(|err| syn::Error::new(err.span(), USAGE))?;
            if key != "blocking" {
                return Err(syn::Error::new(key.span(), USAGE));
            }
            input.parse::<Token![=]>()?;
            Args::Blocking(input.parse()?)
        };
        if input.peek(Token![,]) {
            input.parse::<Token![,]>()?;
        }
        if !input.is_empty() {
            return Err(input.error(
                "one twin per #[bridge]: an async twin needs a sync trait and a blocking twin an \
                 async one, so a trait has one or the other",
            ));
        }
        Ok(args)
    }
}

/// Whether an attribute is `#[bridge(skip)]` on a method.
fn is_skip(attr: &Attribute) -> bool {
    attr.path().is_ident("bridge")
        && attr
            .parse_args::<Ident>()
            .map(|arg| arg == "skip")
            .unwrap_or(false)
}

fn expand(args: Args, mut original: ItemTrait) -> TokenStream2 {
    // Methods marked `#[bridge(skip)]` are left out of the twin; the marker itself is
    // removed so the original trait is exactly what was written without it.
    let mut skipped = Vec::new();
    for item in &mut original.items {
        if let TraitItem::Fn(method) = item {
            let before = method.attrs.len();
            method.attrs.retain(|attr| !is_skip(attr));
            if method.attrs.len() != before {
                skipped.push(method.sig.ident.clone());
            }
        }
    }
    let mut errors = Errors::default();
    let twin = match &args {
        Args::Async(name) => async_twin(&original, name, &skipped, &mut errors),
        Args::Blocking(name) => blocking_twin(&original, name, &skipped, &mut errors),
    };
    match errors.0 {
        // The original trait is still emitted, so only the refusal is reported, not every
        // use of the trait as well.
        Some(err) => {
            let err = err.to_compile_error();
            quote!(#original #err)
        }
        None => quote!(#original #twin),
    }
}

#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, tokens: impl ToTokens, message: String) {
        let err = syn::Error::new_spanned(tokens, message);
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }
}

/// What the trait itself may not have, for either twin.
fn check_trait(original: &ItemTrait, twin: &Ident, errors: &mut Errors) {
    let name = &original.ident;
    if twin == name {
        errors.push(
            twin,
            format!("#[bridge]: the twin needs a name of its own, not `{name}`"),
        );
    }
    if !original.generics.params.is_empty() || original.generics.where_clause.is_some() {
        errors.push(
            &original.generics,
            format!(
                "#[bridge]: trait `{name}` is generic, and its twin's carriers could not name \
                 the parameters: bridge a non-generic trait (with the \
                 concrete types in its methods)"
            ),
        );
    }
    if let Some(unsafety) = &original.unsafety {
        errors.push(
            unsafety,
            format!(
                "#[bridge]: trait `{name}` is `unsafe`, and the generated impls cannot uphold \
                 contracts they do not know: bridge a safe trait"
            ),
        );
    }
    for item in &original.items {
        match item {
            TraitItem::Fn(_) => {}
            TraitItem::Type(ty) => errors.push(
                ty,
                format!(
                    "#[bridge]: associated type `{}` of `{name}` is not supported: a twin is used \
                     as `dyn`, where every carrier would have to name the type; use a concrete \
                     type in the method signatures (the twin can then mirror them)",
                    ty.ident
                ),
            ),
            TraitItem::Const(c) => errors.push(
                c,
                format!(
                    "#[bridge]: associated const `{}` of `{name}` is not supported: a const is \
                     no call and cannot cross a bridge; keep it on `{name}` in a separate trait, \
                     or make it a method `fn {}(&self) -> T`",
                    c.ident,
                    c.ident.to_string().to_lowercase()
                ),
            ),
            other => errors.push(
                other,
                format!(
                    "#[bridge]: `{name}` has an item that is not a method (a macro call?); the \
                     bridge can only mirror methods"
                ),
            ),
        }
    }
}

/// `&self` or `&mut self`; anything else is refused.
#[derive(Clone, Copy, PartialEq)]
enum Receiver {
    Shared,
    Mut,
}

fn receiver(trait_name: &Ident, sig: &Signature, errors: &mut Errors) -> Option<Receiver> {
    let method = &sig.ident;
    let Some(FnArg::Receiver(recv)) = sig.inputs.first() else {
        errors.push(
            sig,
            format!(
                "#[bridge]: `{trait_name}::{method}` has no `self` receiver: a twin runs methods \
                 on the carrier's object, and an associated function has none; move it out of \
                 the trait, or mark it `#[bridge(skip)]` to leave it out of the twin"
            ),
        );
        return None;
    };
    let by_ref = match (&recv.reference, &recv.colon_token, &*recv.ty) {
        (Some(_), None, _) => Some(recv.mutability.is_some()),
        (None, Some(_), Type::Reference(r)) if is_self_path(&r.elem) => {
            Some(r.mutability.is_some())
        }
        _ => None,
    };
    match by_ref {
        Some(true) => Some(Receiver::Mut),
        Some(false) => Some(Receiver::Shared),
        None => {
            errors.push(
                recv,
                format!(
                    "#[bridge]: `{trait_name}::{method}` takes `self` by value or in a box: the \
                     object stays with its carrier and cannot be moved out; take `&self` or \
                     `&mut self`, or mark the method `#[bridge(skip)]`"
                ),
            );
            None
        }
    }
}

fn is_self_path(ty: &Type) -> bool {
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
}

/// What a type mentions that cannot be mirrored.
#[derive(Default)]
struct Finds {
    borrow: Option<Span>,
    impl_trait: Option<Span>,
    self_type: Option<Span>,
}

impl<'ast> Visit<'ast> for Finds {
    fn visit_type_reference(&mut self, r: &'ast syn::TypeReference) {
        let is_static = r.lifetime.as_ref().is_some_and(|l| l.ident == "static");
        if !is_static && self.borrow.is_none() {
            self.borrow = Some(r.span());
        }
        syn::visit::visit_type_reference(self, r);
    }
    fn visit_lifetime(&mut self, l: &'ast Lifetime) {
        if l.ident != "static" && self.borrow.is_none() {
            self.borrow = Some(l.span());
        }
    }
    fn visit_type_impl_trait(&mut self, t: &'ast syn::TypeImplTrait) {
        self.impl_trait.get_or_insert(t.span());
        syn::visit::visit_type_impl_trait(self, t);
    }
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.segments.first().is_some_and(|s| s.ident == "Self") {
            self.self_type.get_or_insert(p.span());
        }
        syn::visit::visit_path(self, p);
    }
    fn visit_qself(&mut self, q: &'ast syn::QSelf) {
        if is_self_path(&q.ty) {
            self.self_type.get_or_insert(q.ty.span());
        }
        syn::visit::visit_qself(self, q);
    }
}

fn finds(ty: &Type) -> Finds {
    let mut f = Finds::default();
    f.visit_type(ty);
    f
}

/// The checks every method of either twin gets.
fn check_common(trait_name: &Ident, sig: &Signature, errors: &mut Errors) {
    let method = &sig.ident;
    if let Some(unsafety) = &sig.unsafety {
        errors.push(
            unsafety,
            format!(
                "#[bridge]: `{trait_name}::{method}` is `unsafe`: the generated code would call it \
                 without knowing its contract; make it safe, or mark it `#[bridge(skip)]`"
            ),
        );
    }
    if let Some(abi) = &sig.abi {
        errors.push(
            abi,
            format!("#[bridge]: `{trait_name}::{method}` has an `extern` ABI, which a twin cannot mirror"),
        );
    }
    for arg in sig.inputs.iter().skip(1) {
        if let FnArg::Typed(arg) = arg {
            if finds(&arg.ty).self_type.is_some() {
                errors.push(
                    &arg.ty,
                    format!(
                        "#[bridge]: an argument of `{trait_name}::{method}` names `Self`, which in \
                         the twin would be the carrier, not the object behind it; name the \
                         concrete type, or mark the method `#[bridge(skip)]`"
                    ),
                );
            }
        }
    }
}

/// The output type of an async method: `async fn m() -> R` or
/// `fn m() -> impl Future<Output = R> (+ Send ...)`.
fn async_output(sig: &Signature) -> Option<Type> {
    if sig.asyncness.is_some() {
        return Some(match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        });
    }
    let ReturnType::Type(_, ty) = &sig.output else {
        return None;
    };
    let Type::ImplTrait(imp) = &**ty else {
        return None;
    };
    for bound in &imp.bounds {
        let TypeParamBound::Trait(t) = bound else {
            continue;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Future" {
            continue;
        }
        let syn::PathArguments::AngleBracketed(generic) = &last.arguments else {
            return None;
        };
        for arg in &generic.args {
            if let syn::GenericArgument::AssocType(assoc) = arg {
                if assoc.ident == "Output" {
                    return Some(assoc.ty.clone());
                }
            }
        }
    }
    None
}

fn check_output(trait_name: &Ident, method: &Ident, output: &Type, errors: &mut Errors) {
    let f = finds(output);
    if f.borrow.is_some() {
        errors.push(
            output,
            format!(
                "#[bridge]: `{trait_name}::{method}` returns a reference (or a type that \
                 borrows): the object it would borrow from stays with the carrier while the \
                 caller holds the value; return an owned value (`String` for `&str`, `Vec<T>` \
                 for `&[T]`, a clone), or mark the method `#[bridge(skip)]`"
            ),
        );
    } else if f.impl_trait.is_some() {
        errors.push(
            output,
            format!(
                "#[bridge]: `{trait_name}::{method}` returns `impl Trait`, which a twin's \
                 signature cannot name; return a concrete type (or a `Box<dyn Trait + Send>`), \
                 or mark the method `#[bridge(skip)]`"
            ),
        );
    } else if f.self_type.is_some() {
        errors.push(
            output,
            format!(
                "#[bridge]: `{trait_name}::{method}` returns a type naming `Self`, which in the \
                 twin would be the carrier; name the concrete type, or mark the method \
                 `#[bridge(skip)]`"
            ),
        );
    }
}

/// Documentation attributes only.
fn docs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("doc")).collect()
}

/// Attributes other than docs (cfg, deprecated, allow, ...), carried over to the twin.
fn other_attrs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs
        .iter()
        .filter(|a| !a.path().is_ident("doc") && !a.path().is_ident("bridge"))
        .collect()
}

/// `cfg` attributes, which the impls of a method need too.
fn cfgs(attrs: &[Attribute]) -> Vec<&Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg")).collect()
}

/// One argument of a method, named.
struct Arg {
    name: Ident,
    ty: Type,
}

fn named_args(sig: &Signature) -> Vec<Arg> {
    sig.inputs
        .iter()
        .skip(1)
        .enumerate()
        .filter_map(|(i, arg)| match arg {
            FnArg::Typed(arg) => Some(Arg {
                name: match &*arg.pat {
                    Pat::Ident(p) if p.subpat.is_none() => p.ident.clone(),
                    _ => format_ident!("__bridge_arg{}", i),
                },
                ty: (*arg.ty).clone(),
            }),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// How an argument crosses to an async twin's carrier.
enum Crossing {
    /// Moved across as is.
    Owned(Type),
    /// `&B`: copied with `ToOwned` before crossing, lent back as `&B`.
    Borrowed(Type),
}

// ---------------------------------------------------------------------------------------
// The async twin of a sync trait.
// ---------------------------------------------------------------------------------------

struct AsyncMethod<'a> {
    method: &'a TraitItemFn,
    receiver: Receiver,
    args: Vec<(Ident, Crossing)>,
    output: Type,
}

fn async_twin(
    original: &ItemTrait,
    twin: &Ident,
    skipped: &[Ident],
    errors: &mut Errors,
) -> TokenStream2 {
    check_trait(original, twin, errors);
    let name = &original.ident;
    let mut methods = Vec::new();
    for item in &original.items {
        let TraitItem::Fn(method) = item else {
            continue;
        };
        if skipped.contains(&method.sig.ident) {
            continue;
        }
        if let Some(m) = async_method(name, method, errors) {
            methods.push(m);
        }
    }
    if errors.0.is_some() {
        return TokenStream2::new();
    }

    let vis = &original.vis;
    let trait_docs = docs(&original.attrs);
    let trait_attrs = other_attrs(&original.attrs);
    let mirror_doc = format!(
        " The async twin of [`{name}`], generated by `#[bridge(async = {twin})]`: each method runs \
         the method of the same name on the object behind a carrier, off the executor.\n\n \
         Carriers: `async_bridge::Worker<T>` and `async_bridge::WorkerPool<T>` for any \
         `T: {name} + 'static` (the object stays on its thread: it need not be `Send`), and \
         `async_bridge::Offloaded<T>` for a `T: {name} + Send + Sync + 'static` on an \
         `Offloader` lane. A native async implementation can implement it too (with \
         `#[async_trait::async_trait]`), so callers holding a `dyn {twin}` never change.\n\n \
         The method's own return value (its own `Result` too) is the `Ok` value; `Err` is an \
         `async_bridge::CallError` of the bridge (a panic, a shutdown, a lane's timeout or \
         rejection)."
    );
    let decls = methods.iter().map(|m| {
        let method_name = &m.method.sig.ident;
        let attrs = other_attrs(&m.method.attrs);
        let docs = docs(&m.method.attrs);
        let mirror = format!(
            " Runs [`{name}::{method_name}`] through the carrier; `Err` is the bridge's \
             `CallError`, never the method's own error."
        );
        let args = m.args.iter().map(|(arg, crossing)| match crossing {
            Crossing::Owned(ty) => quote!(#arg: #ty),
            Crossing::Borrowed(ty) => quote!(#arg: &#ty),
        });
        let output = &m.output;
        let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        quote_spanned! {m.method.sig.ident.span()=>
            #(#attrs)*
            #(#docs)*
            #separator
            #[doc = #mirror]
            #[track_caller]
            async fn #method_name(&self, #(#args),*)
                -> ::core::result::Result<#output, ::async_bridge::CallError>;
        }
    });
    let separator = (!trait_docs.is_empty()).then(|| quote!(#[doc = ""]));
    let decl = quote! {
        #(#trait_attrs)*
        #(#trait_docs)*
        #separator
        #[doc = #mirror_doc]
        #[::async_bridge::__private::async_trait]
        #vis trait #twin: ::core::marker::Send + ::core::marker::Sync {
            #(#decls)*
        }
    };

    let worker = async_impl(
        name,
        twin,
        &methods,
        quote!(::async_bridge::Worker<__T>),
        quote!(__T: #name + 'static),
        "worker",
        |_| (quote!(::async_bridge::Worker::call), quote!(&mut __T)),
    );
    let pool = async_impl(
        name,
        twin,
        &methods,
        quote!(::async_bridge::WorkerPool<__T>),
        quote!(__T: #name + 'static),
        "worker",
        |_| (quote!(::async_bridge::WorkerPool::call), quote!(&mut __T)),
    );
    let offloaded = async_impl(
        name,
        twin,
        &methods,
        quote!(::async_bridge::Offloaded<__T>),
        quote!(__T: #name + ::core::marker::Send + ::core::marker::Sync + 'static),
        "offload",
        |receiver| match receiver {
            Receiver::Shared => (quote!(::async_bridge::Offloaded::run), quote!(&__T)),
            Receiver::Mut => (quote!(::async_bridge::Offloaded::run_mut), quote!(&mut __T)),
        },
    );
    quote!(#decl #worker #pool #offloaded)
}

fn async_method<'a>(
    trait_name: &Ident,
    method: &'a TraitItemFn,
    errors: &mut Errors,
) -> Option<AsyncMethod<'a>> {
    let sig = &method.sig;
    let name = &sig.ident;
    check_common(trait_name, sig, errors);
    if sig.asyncness.is_some() || async_output(sig).is_some() {
        errors.push(
            sig,
            format!(
                "#[bridge(async = ..)]: `{trait_name}::{name}` is already async; an async twin \
                 mirrors a sync trait (for an async trait, use `#[bridge(blocking = ..)]`), or \
                 mark the method `#[bridge(skip)]`"
            ),
        );
        return None;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(
            &sig.generics,
            format!(
                "#[bridge(async = ..)]: `{trait_name}::{name}` is generic (or has a `where` \
                 clause), and the twin is used as `dyn`, where no carrier can name the \
                 parameters; give it concrete types (one method per type, or a boxed value), \
                 use elided lifetimes, or mark it `#[bridge(skip)]`"
            ),
        );
        return None;
    }
    let receiver = receiver(trait_name, sig, errors)?;
    let mut args = Vec::new();
    let mut ok = true;
    for arg in named_args(sig) {
        let arg_name = &arg.name;
        let refuse = |errors: &mut Errors, why: &str| {
            errors.push(
                &arg.ty,
                format!(
                    "#[bridge(async = ..)]: argument `{arg_name}` of `{trait_name}::{name}` {why}"
                ),
            )
        };
        let crossing = match &arg.ty {
            Type::Reference(r) if r.mutability.is_some() => {
                refuse(
                    errors,
                    "is a `&mut` borrow: the call runs on another thread after this one has \
                     moved on, so the caller's value could not be written in place; take the \
                     value by value and return it (e.g. `fn fill(&self, buf: Vec<u8>) -> \
                     Vec<u8>`), or mark the method `#[bridge(skip)]`",
                );
                ok = false;
                continue;
            }
            // A `&'static T` can move across as it is.
            Type::Reference(r) if r.lifetime.as_ref().is_some_and(|l| l.ident == "static") => {
                Crossing::Owned(arg.ty.clone())
            }
            Type::Reference(r) => Crossing::Borrowed((*r.elem).clone()),
            ty => Crossing::Owned(ty.clone()),
        };
        let inner = match &crossing {
            Crossing::Owned(ty) | Crossing::Borrowed(ty) => ty,
        };
        let f = finds(inner);
        if f.impl_trait.is_some() {
            refuse(
                errors,
                "is `impl Trait`, a hidden generic that no carrier behind a `dyn` twin can \
                 name; take a concrete type or a `Box<dyn Trait + Send>`, or mark the method \
                 `#[bridge(skip)]`",
            );
            ok = false;
        } else if f.borrow.is_some() {
            refuse(
                errors,
                "borrows below its top level (a reference or lifetime inside the type): only \
                 a plain `&T` (with `T: ToOwned`) is copied across; take an owned type \
                 (`String` for `&str` inside, `Vec<T>` for `&[T]`), or mark the method \
                 `#[bridge(skip)]`",
            );
            ok = false;
        }
        args.push((arg.name, crossing));
    }
    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    check_output(trait_name, name, &output, errors);
    ok.then_some(AsyncMethod {
        method,
        receiver,
        args,
        output,
    })
}

/// `impl Twin for Carrier<__T> where __T: Trait`, each method in async-trait's shape,
/// written out so that the carrier's `#[track_caller]` entry is called while the caller
/// calls the twin (and so records the caller's site), not when the future is polled.
fn async_impl(
    trait_name: &Ident,
    twin: &Ident,
    methods: &[AsyncMethod<'_>],
    carrier: TokenStream2,
    bound: TokenStream2,
    kind: &str,
    entry: impl Fn(Receiver) -> (TokenStream2, TokenStream2),
) -> TokenStream2 {
    let fns = methods.iter().map(|m| {
        let name = &m.method.sig.ident;
        let cfgs = cfgs(&m.method.attrs);
        let mut lifetimes = Vec::new();
        let mut params = Vec::new();
        let mut copies = Vec::new();
        let mut passed = Vec::new();
        for (arg, crossing) in &m.args {
            match crossing {
                Crossing::Owned(ty) => {
                    params.push(quote!(#arg: #ty));
                    passed.push(quote!(#arg));
                }
                Crossing::Borrowed(ty) => {
                    let life = Lifetime::new(
                        &format!("'life{}", lifetimes.len() + 1),
                        Span::call_site(),
                    );
                    params.push(quote!(#arg: &#life #ty));
                    lifetimes.push(life);
                    copies.push(quote! {
                        let #arg = <#ty as ::std::borrow::ToOwned>::to_owned(#arg);
                    });
                    passed.push(quote! {
                        <<#ty as ::std::borrow::ToOwned>::Owned as ::std::borrow::Borrow<#ty>>::borrow(&#arg)
                    });
                }
            }
        }
        let output = &m.output;
        let (entry, object) = entry(m.receiver);
        let what = format!("{twin}::{name}");
        quote! {
            #(#cfgs)*
            #[track_caller]
            #[allow(deprecated)]
            fn #name<'life0, #(#lifetimes,)* 'async_trait>(&'life0 self, #(#params),*)
                -> ::core::pin::Pin<::std::boxed::Box<
                    dyn ::core::future::Future<
                        Output = ::core::result::Result<#output, ::async_bridge::CallError>
                    > + ::core::marker::Send + 'async_trait
                >>
            where
                'life0: 'async_trait,
                #(#lifetimes: 'async_trait,)*
                Self: 'async_trait,
            {
                #(#copies)*
                ::async_bridge::__private::twin(::core::panic::Location::caller(), #what, #kind);
                let __bridge_call = #entry(self, move |__bridge_object: #object| {
                    <__T as #trait_name>::#name(__bridge_object, #(#passed),*)
                });
                ::std::boxed::Box::pin(::async_bridge::__private::finish(__bridge_call))
            }
        }
    });
    quote! {
        #[allow(
            clippy::type_complexity,
            clippy::type_repetition_in_bounds,
            clippy::needless_lifetimes,
            clippy::used_underscore_binding
        )]
        impl<__T> #twin for #carrier where #bound {
            #(#fns)*
        }
    }
}

// ---------------------------------------------------------------------------------------
// The blocking twin of an async trait.
// ---------------------------------------------------------------------------------------

fn blocking_twin(
    original: &ItemTrait,
    twin: &Ident,
    skipped: &[Ident],
    errors: &mut Errors,
) -> TokenStream2 {
    check_trait(original, twin, errors);
    let name = &original.ident;
    let vis = &original.vis;
    let mut decls = Vec::new();
    let mut fns = Vec::new();
    for item in &original.items {
        let TraitItem::Fn(method) = item else {
            continue;
        };
        let sig = &method.sig;
        let method_name = &sig.ident;
        if skipped.contains(method_name) {
            continue;
        }
        check_common(name, sig, errors);
        let Some(output) = async_output(sig) else {
            errors.push(
                sig,
                format!(
                    "#[bridge(blocking = ..)]: `{name}::{method_name}` is not async (neither \
                     `async fn` nor `fn .. -> impl Future<Output = ..>`): a blocking twin \
                     mirrors async methods; call it directly, or mark it `#[bridge(skip)]`"
                ),
            );
            continue;
        };
        let Some(receiver) = receiver(name, sig, errors) else {
            continue;
        };
        check_output(name, method_name, &output, errors);
        let args = named_args(sig);
        let arg_names: Vec<&Ident> = args.iter().map(|a| &a.name).collect();
        let params: Vec<TokenStream2> = args
            .iter()
            .map(|Arg { name, ty }| quote!(#name: #ty))
            .collect();
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let (self_param, entry, object) = match receiver {
            Receiver::Shared => (quote!(&self), quote!(blocking_call), quote!(&__T)),
            Receiver::Mut => (
                quote!(&mut self),
                quote!(blocking_call_mut),
                quote!(&mut __T),
            ),
        };
        let attrs = other_attrs(&method.attrs);
        let cfgs = cfgs(&method.attrs);
        let docs = docs(&method.attrs);
        let separator = (!docs.is_empty()).then(|| quote!(#[doc = ""]));
        let mirror = format!(
            " Runs [`{name}::{method_name}`] to completion through the blocking facade; `Err` \
             is the bridge's `CallError` (refused where blocking would deadlock, the portal \
             shut down, or a panic), never a value of the method."
        );
        let what = format!("{twin}::{method_name}");
        decls.push(quote_spanned! {method_name.span()=>
            #(#attrs)*
            #(#docs)*
            #separator
            #[doc = #mirror]
            #[track_caller]
            fn #method_name #generics (#self_param, #(#params),*)
                -> ::core::result::Result<#output, ::async_bridge::CallError>
                #where_clause;
        });
        fns.push(quote! {
            #(#cfgs)*
            #[track_caller]
            #[allow(deprecated)]
            fn #method_name #generics (#self_param, #(#params),*)
                -> ::core::result::Result<#output, ::async_bridge::CallError>
                #where_clause
            {
                let __bridge_site = ::core::panic::Location::caller();
                ::async_bridge::__private::twin(__bridge_site, #what, "facade");
                ::async_bridge::__private::settle(
                    #what,
                    __bridge_site,
                    ::async_bridge::__private::#entry(
                        self,
                        __bridge_site,
                        async move |__bridge_object: #object| {
                            <__T as #name>::#method_name(__bridge_object, #(#arg_names),*).await
                        },
                    ),
                )
            }
        });
    }
    if errors.0.is_some() {
        return TokenStream2::new();
    }
    let trait_docs = docs(&original.attrs);
    let trait_attrs = other_attrs(&original.attrs);
    let separator = (!trait_docs.is_empty()).then(|| quote!(#[doc = ""]));
    let mirror_doc = format!(
        " The blocking twin of [`{name}`], generated by `#[bridge(blocking = {twin})]`: each \
         method runs the async method of the same name to completion through the blocking \
         facade of `async_bridge::Blocking<T>` (implemented for any `T: {name}`), so it is \
         safe from plain threads, runtime workers, blocking and rayon threads and nested \
         facades, and refused with `CallError::is_would_deadlock` where it would deadlock.\n\n \
         The method's own return value is the `Ok` value; `Err` is an \
         `async_bridge::CallError` of the bridge."
    );
    quote! {
        #(#trait_attrs)*
        #(#trait_docs)*
        #separator
        #[doc = #mirror_doc]
        #vis trait #twin {
            #(#decls)*
        }

        #[allow(clippy::used_underscore_binding)]
        impl<__T: #name> #twin for ::async_bridge::Blocking<__T> {
            #(#fns)*
        }
    }
}
