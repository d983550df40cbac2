//! One op type of a branch (`ConvBn<C, C, 3, S, Groups<G>>`, `Bn<C>`, …): its positional
//! sizes and its options, written as types.

use super::ast::{Bank, BnSpec, ConvSpec, OpKind, Pair, parse_pair_arg};
use super::geo::{Geo, Symbols};
use syn::spanned::Spanned;
use syn::{Expr, GenericArgument, Ident, Lit, LitFloat, PathArguments, Type};

const OPS: &str = "Conv, ConvBn, Bn, Scale, AvgPool, DctPrior, Identity, ImplicitA, ImplicitM";
/// Non-linear layer names, refused inside a branch (and as a model field).
pub const NON_LINEAR: &[&str] = &[
    "Relu",
    "ReLU",
    "Silu",
    "SiLU",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Hardswish",
    "Mish",
    "Se",
    "SqueezeExcite",
    "Activation",
];

/// Positional arguments and options (`Groups<G>`, `Padding<1>`, …) of an op type.
struct OpArgs<'a> {
    op: &'a Ident,
    positional: Vec<&'a GenericArgument>,
    options: Vec<(Ident, GenericArgument)>,
}

impl<'a> OpArgs<'a> {
    /// Sorts the op's generic arguments into positional sizes and options (`Name<value>`),
    /// refusing `name = value` and an option given twice.
    fn collect(op: &'a Ident, arguments: &'a PathArguments) -> syn::Result<Self> {
        let mut args = OpArgs { op, positional: Vec::new(), options: Vec::new() };
        let PathArguments::AngleBracketed(list) = arguments else { return Ok(args) };
        for arg in &list.args {
            match arg {
                GenericArgument::AssocType(_) | GenericArgument::AssocConst(_) => {
                    return Err(syn::Error::new(
                        arg.span(),
                        "options are written as types, e.g. `Groups<G>`, `Padding<1>`, `Eps<1e-3>` (not `name = value`)",
                    ));
                }
                other => match as_option(other) {
                    Some((name, _)) if args.options.iter().any(|(n, _)| *n == name) => {
                        return Err(syn::Error::new(
                            name.span(),
                            format!("`{name}` is given twice for `{op}`; keep one"),
                        ));
                    }
                    Some(option) => args.options.push(option),
                    None => args.positional.push(other),
                },
            }
        }
        Ok(args)
    }

    fn take(&mut self, name: &str) -> Option<GenericArgument> {
        let at = self.options.iter().position(|(n, _)| n == name)?;
        Some(self.options.remove(at).1)
    }

    fn positional(&self, at: usize) -> Option<&'a GenericArgument> {
        self.positional.get(at).copied()
    }

    fn expect_positional(&self, min: usize, max: usize, usage: &str) -> syn::Result<()> {
        let n = self.positional.len();
        if n < min || n > max {
            return Err(syn::Error::new(
                self.op.span(),
                format!("`{}` takes {usage}; found {n} positional argument{}", self.op, if n == 1 { "" } else { "s" }),
            ));
        }
        Ok(())
    }

    fn finish(&self, allowed: &str) -> syn::Result<()> {
        match self.options.first() {
            None => Ok(()),
            Some((name, _)) => Err(syn::Error::new(
                name.span(),
                format!("unknown argument `{name}` for `{}`; expected {allowed}", self.op),
            )),
        }
    }
}

/// `Conv<IN, OUT, K[, S]>` (`plain`) or `ConvBn<…>` with their options.
fn parse_conv(args: &mut OpArgs<'_>, syms: &Symbols, plain: bool) -> syn::Result<OpKind> {
    args.expect_positional(3, 4, "<C_IN, C_OUT, KERNEL[, STRIDE]>")?;
    let geo = |arg: &GenericArgument| Geo::from_generic_arg(arg, syms);
    let pair = |arg: &GenericArgument| parse_pair_arg(arg, syms);
    let mut spec = ConvSpec {
        cin: geo(args.positional(0).expect("checked"))?,
        cout: geo(args.positional(1).expect("checked"))?,
        kernel: pair(args.positional(2).expect("checked"))?,
        stride: args.positional(3).map(pair).transpose()?.unwrap_or(Pair::lit(1)),
        padding: args.take("Padding").as_ref().map(pair).transpose()?,
        dilation: args.take("Dilation").as_ref().map(pair).transpose()?.unwrap_or(Pair::lit(1)),
        groups: args.take("Groups").as_ref().map(geo).transpose()?.unwrap_or(Geo::lit(1)),
        bias: false,
        identity_init: false,
        identity_based: false,
    };
    if let Some(init) = args.take("IdentityInit") {
        spec.identity_init = parse_bool(&init)?;
        if spec.identity_init && (spec.kernel.h.value() != Some(1) || spec.kernel.w.value() != Some(1)) {
            return Err(syn::Error::new(args.op.span(), "`IdentityInit` is for 1x1 convs"));
        }
    }
    if plain {
        if let Some(bias) = args.take("Bias") {
            spec.bias = parse_bool(&bias)?;
        }
        if let Some(based) = args.take("IdentityBased") {
            spec.identity_based = parse_bool(&based)?;
            let one = |p: &Pair| p.h.value() == Some(1) && p.w.value() == Some(1);
            if spec.identity_based && (!one(&spec.kernel) || !one(&spec.stride) || spec.bias || spec.identity_init) {
                return Err(syn::Error::new(
                    args.op.span(),
                    "`IdentityBased` is for bias-free 1x1 convs with stride 1 (they start at the identity already)",
                ));
            }
            if let (Some(cin), Some(cout)) = (spec.cin.value(), spec.cout.value())
                && spec.identity_based
                && cin != cout
            {
                return Err(syn::Error::new(
                    args.op.span(),
                    format!("an `IdentityBased` conv maps C channels to C; this one maps {cin} to {cout}"),
                ));
            }
        }
        args.finish("Padding<P>, Dilation<D>, Groups<G>, Bias<true>, IdentityInit<true> or IdentityBased<true>")?;
        Ok(OpKind::Conv(spec))
    } else {
        let bn = take_bn(args)?;
        args.finish("Padding<P>, Dilation<D>, Groups<G>, IdentityInit<true>, Eps<E> or Momentum<M>")?;
        Ok(OpKind::ConvBn(spec, bn))
    }
}

/// `Name<value>` written as a generic argument: an option of the op.
fn as_option(arg: &GenericArgument) -> Option<(Ident, GenericArgument)> {
    let GenericArgument::Type(Type::Path(path)) = arg else { return None };
    let last = path.path.segments.last()?;
    match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => Some((last.ident.clone(), args.args[0].clone())),
        _ => None,
    }
}

pub(super) fn parse_op(syms: &Symbols, ty: &Type) -> syn::Result<OpKind> {
    let Type::Path(path) = ty else {
        return Err(syn::Error::new(ty.span(), format!("expected a branch op ({OPS}) or a tuple of them")));
    };
    let last = path.path.segments.last().expect("non-empty path");
    let op = &last.ident;
    let name = op.to_string();
    if NON_LINEAR.contains(&name.as_str()) {
        return Err(syn::Error::new(
            op.span(),
            format!(
                "non-linear op `{name}` inside a branch: a branch must be linear to fold into one conv; \
                 put non-linear ops after the sum, e.g. `#[rep::block(post(relu))]`"
            ),
        ));
    }
    let mut args = OpArgs::collect(op, &last.arguments)?;
    let geo = |arg: &GenericArgument| Geo::from_generic_arg(arg, syms);
    let named_pair = |arg: GenericArgument| parse_pair_arg(&arg, syms);
    match name.as_str() {
        "Conv" | "ConvBn" => parse_conv(&mut args, syms, name == "Conv"),
        "Bn" => {
            args.expect_positional(1, 1, "<CHANNELS>")?;
            let channels = geo(args.positional(0).expect("checked"))?;
            let bn = take_bn(&mut args)?;
            args.finish("Eps<E> or Momentum<M>")?;
            Ok(OpKind::Bn(channels, bn))
        }
        "Scale" => {
            args.expect_positional(1, 1, "<CHANNELS>")?;
            let channels = geo(args.positional(0).expect("checked"))?;
            let init = match args.take("Init") {
                Some(arg) => parse_float(&arg)?,
                None => LitFloat::new("1.0", op.span()),
            };
            args.finish("Init<VALUE>")?;
            Ok(OpKind::Scale(channels, init))
        }
        "AvgPool" | "DctPrior" => {
            args.expect_positional(2, 3, "<CHANNELS, KERNEL[, STRIDE]>")?;
            let channels = geo(args.positional(0).expect("checked"))?;
            let kernel = parse_pair_arg(args.positional(1).expect("checked"), syms)?;
            let stride = args.positional(2).map(|s| parse_pair_arg(s, syms)).transpose()?.unwrap_or(Pair::lit(1));
            let padding = args.take("Padding").map(named_pair).transpose()?;
            args.finish("Padding<P>")?;
            let bank = if name == "AvgPool" { Bank::Avg } else { Bank::Dct };
            Ok(OpKind::Filter { bank, channels, kernel, stride, padding })
        }
        "ImplicitA" | "ImplicitM" => {
            args.expect_positional(1, 1, "<CHANNELS>")?;
            let channels = geo(args.positional(0).expect("checked"))?;
            args.finish("nothing else")?;
            Ok(if name == "ImplicitA" { OpKind::ImplicitA(channels) } else { OpKind::ImplicitM(channels) })
        }
        "Identity" => {
            args.expect_positional(1, 1, "<CHANNELS>")?;
            let channels = geo(args.positional(0).expect("checked"))?;
            args.finish("nothing else")?;
            Ok(OpKind::Identity(channels))
        }
        _ => Err(syn::Error::new(op.span(), format!("unknown op `{name}`; expected one of {OPS}"))),
    }
}

fn take_bn(args: &mut OpArgs<'_>) -> syn::Result<BnSpec> {
    let eps = args.take("Eps").map(|a| parse_float(&a)).transpose()?;
    let momentum = args.take("Momentum").map(|a| parse_float(&a)).transpose()?;
    check_bn_options(eps.as_ref(), momentum.as_ref())?;
    Ok(BnSpec { eps, momentum })
}

/// ε must be positive and finite (the BN divides by `√(σ² + ε)`), the momentum in [0, 1].
pub(super) fn check_bn_options(eps: Option<&LitFloat>, momentum: Option<&LitFloat>) -> syn::Result<()> {
    if let Some(eps) = eps {
        let value: f64 = eps.base10_parse()?;
        if !(value > 0.0 && value.is_finite()) {
            return Err(syn::Error::new(eps.span(), format!("`Eps` must be a positive number, found {value}")));
        }
    }
    if let Some(momentum) = momentum {
        let value: f64 = momentum.base10_parse()?;
        if !(0.0..=1.0).contains(&value) {
            return Err(syn::Error::new(momentum.span(), format!("`Momentum` must be in [0, 1], found {value}")));
        }
    }
    Ok(())
}

fn parse_float(arg: &GenericArgument) -> syn::Result<LitFloat> {
    match arg {
        GenericArgument::Const(Expr::Lit(syn::ExprLit { lit: Lit::Float(f), .. })) => Ok(f.clone()),
        other => Err(syn::Error::new(other.span(), "expected a float literal, e.g. `1e-3`")),
    }
}

fn parse_bool(arg: &GenericArgument) -> syn::Result<bool> {
    match arg {
        GenericArgument::Const(Expr::Lit(syn::ExprLit { lit: Lit::Bool(b), .. })) => Ok(b.value),
        GenericArgument::Type(Type::Path(p)) if p.path.is_ident("true") => Ok(true),
        GenericArgument::Type(Type::Path(p)) if p.path.is_ident("false") => Ok(false),
        other => Err(syn::Error::new(other.span(), "expected `true` or `false`")),
    }
}
