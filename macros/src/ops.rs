//! The table of differentiable primitives: syntax → rule trait.
//!
//! The macro contains no derivative math. For every primitive it knows only which trait
//! of `adjoint_runtime::rules` holds the rule, which method computes the contribution to
//! each operand, and which values that method reads (so the transform knows what the
//! reverse sweep must keep). rustc then picks the implementation for the actual types.
//!
//! A contribution is always `Trait::method(&ybar, &need_1, …, &need_k)` where `ybar` is
//! the adjoint of the primitive's result. Linear primitives on scalars use the
//! structural forms `Identity` and `Negate` instead, so no operand has to be kept only
//! to tell rustc its type.

use crate::ir::BinOp;

/// A value a rule reads.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Need {
    /// The operand at this position (0 is the receiver of a method, or the left operand).
    Operand(usize),
    /// The primitive's result.
    Output,
}

/// How the adjoint of one operand is obtained from the adjoint of the result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Contribution {
    /// The operand receives no gradient (an integer exponent, a piecewise-constant op).
    None,
    /// The adjoint of the result itself (`ȳ`).
    Identity,
    /// Its negation (`-ȳ`).
    Negate,
    /// `rules::<trait_name>::<method>(&ȳ, needs…)`.
    Rule { trait_name: &'static str, method: &'static str, needs: &'static [Need] },
}

/// One operand's rule, in the all-scalar form and in the general form.
#[derive(Clone, Copy, Debug)]
pub struct InputRule {
    pub scalar: Contribution,
    pub general: Contribution,
}

/// What the primitive's result is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// A differentiable value of the receiver's (or left operand's) kind.
    Same,
    /// A differentiable scalar float taken out of a tensor (`item`).
    Scalar,
    /// A value whose derivative is zero almost everywhere (`floor`, `signum`, a
    /// comparison mask, a shape): not active.
    Constant,
    /// A boolean.
    Bool,
    /// An integer (`numel`, `nrows`).
    Int,
}

impl Output {
    /// Whether a derivative flows through the result.
    pub fn differentiable(self) -> bool {
        matches!(self, Output::Same | Output::Scalar)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Prim {
    pub name: &'static str,
    /// Number of operands (the receiver of a method counts).
    pub arity: usize,
    /// The rule of each operand; only the first `arity` entries are meaningful.
    pub rules: [InputRule; MAX_OPERANDS],
    pub output: Output,
}

impl Prim {
    pub fn inputs(&self) -> &[InputRule] {
        &self.rules[..self.arity]
    }
}

/// The most operands a primitive has (`x.narrow(axis, start, len)`).
pub const MAX_OPERANDS: usize = 4;

const NO_RULE: InputRule = same(Contribution::None);

const fn prim1(name: &'static str, a: InputRule) -> Prim {
    Prim { name, arity: 1, rules: [a, NO_RULE, NO_RULE, NO_RULE], output: Output::Same }
}

const fn prim2(name: &'static str, a: InputRule, b: InputRule) -> Prim {
    Prim { name, arity: 2, rules: [a, b, NO_RULE, NO_RULE], output: Output::Same }
}

const fn prim3(name: &'static str, a: InputRule, b: InputRule, c: InputRule) -> Prim {
    Prim { name, arity: 3, rules: [a, b, c, NO_RULE], output: Output::Same }
}

const fn same(c: Contribution) -> InputRule {
    InputRule { scalar: c, general: c }
}

const fn rule(trait_name: &'static str, method: &'static str, needs: &'static [Need]) -> Contribution {
    Contribution::Rule { trait_name, method, needs }
}

use Contribution::{Identity, Negate};
use Need::{Operand as Op, Output as Out};

const X: &[Need] = &[Op(0)];
const Y: &[Need] = &[Out];
const XY: &[Need] = &[Op(0), Op(1)];

/// A unary float method whose rule reads the given values.
const fn unary(name: &'static str, trait_name: &'static str, method: &'static str, needs: &'static [Need]) -> Prim {
    prim1(name, same(rule(trait_name, method, needs)))
}

const fn constant(name: &'static str, arity: usize) -> Prim {
    Prim { name, arity, rules: [NO_RULE; MAX_OPERANDS], output: Output::Constant }
}

const fn predicate(name: &'static str, arity: usize) -> Prim {
    let mut p = constant(name, arity);
    p.output = Output::Bool;
    p
}

const fn integer(name: &'static str, arity: usize) -> Prim {
    let mut p = constant(name, arity);
    p.output = Output::Int;
    p
}

/// A method of tensors and matrices whose operands' rules are all in the general form
/// (scalars have no such method). Operands past the third (indices) get no gradient.
const fn general(name: &'static str, arity: usize, rules: [Contribution; 3]) -> Prim {
    Prim { name, arity, rules: [same(rules[0]), same(rules[1]), same(rules[2]), NO_RULE], output: Output::Same }
}

const N: Contribution = Contribution::None;

/// The float methods the transform differentiates, by name.
pub const METHODS: &[Prim] = &[
    unary("sqrt", "Sqrt", "sqrt_adjoint", Y),
    unary("cbrt", "Cbrt", "cbrt_adjoint", Y),
    unary("exp", "Exp", "exp_adjoint", Y),
    unary("exp2", "Exp2", "exp2_adjoint", Y),
    unary("exp_m1", "ExpM1", "exp_m1_adjoint", Y),
    unary("ln", "Ln", "ln_adjoint", X),
    unary("ln_1p", "Ln1p", "ln_1p_adjoint", X),
    unary("log10", "Log10", "log10_adjoint", X),
    unary("log2", "Log2", "log2_adjoint", X),
    unary("sin", "Sin", "sin_adjoint", X),
    unary("cos", "Cos", "cos_adjoint", X),
    unary("tan", "Tan", "tan_adjoint", Y),
    unary("asin", "Asin", "asin_adjoint", X),
    unary("acos", "Acos", "acos_adjoint", X),
    unary("atan", "Atan", "atan_adjoint", X),
    unary("sinh", "Sinh", "sinh_adjoint", X),
    unary("cosh", "Cosh", "cosh_adjoint", X),
    unary("tanh", "Tanh", "tanh_adjoint", Y),
    unary("asinh", "Asinh", "asinh_adjoint", X),
    unary("acosh", "Acosh", "acosh_adjoint", X),
    unary("atanh", "Atanh", "atanh_adjoint", X),
    unary("abs", "Abs", "abs_adjoint", X),
    unary("recip", "Recip", "recip_adjoint", Y),
    unary("to_degrees", "ToDegrees", "to_degrees_adjoint", &[]),
    unary("to_radians", "ToRadians", "to_radians_adjoint", &[]),
    prim1("fract", same(Identity)),
    prim2("powi", same(rule("Powi", "powi_adjoint", XY)), same(Contribution::None)),
    prim2(
        "powf",
        same(rule("Powf", "powf_base_adjoint", XY)),
        same(rule("Powf", "powf_exponent_adjoint", &[Op(0), Op(1), Out])),
    ),
    prim2("atan2", same(rule("Atan2", "atan2_lhs_adjoint", XY)), same(rule("Atan2", "atan2_rhs_adjoint", XY))),
    prim2("log", same(rule("Log", "log_value_adjoint", XY)), same(rule("Log", "log_base_adjoint", &[Op(1), Out]))),
    prim2(
        "hypot",
        same(rule("Hypot", "hypot_lhs_adjoint", &[Op(0), Out])),
        same(rule("Hypot", "hypot_rhs_adjoint", &[Op(1), Out])),
    ),
    prim2("max", same(rule("Max", "max_lhs_adjoint", XY)), same(rule("Max", "max_rhs_adjoint", XY))),
    prim2("min", same(rule("Min", "min_lhs_adjoint", XY)), same(rule("Min", "min_rhs_adjoint", XY))),
    prim3(
        "mul_add",
        same(rule("MulAdd", "mul_add_self_adjoint", &[Op(1)])),
        same(rule("MulAdd", "mul_add_factor_adjoint", &[Op(0)])),
        InputRule { scalar: Identity, general: rule("MulAdd", "mul_add_addend_adjoint", &[Op(2)]) },
    ),
    prim3(
        "clamp",
        same(rule("Clamp", "clamp_value_adjoint", &[Op(0), Op(1), Op(2)])),
        same(rule("Clamp", "clamp_min_adjoint", &[Op(0), Op(1)])),
        same(rule("Clamp", "clamp_max_adjoint", &[Op(0), Op(2)])),
    ),
    constant("signum", 1),
    constant("floor", 1),
    constant("ceil", 1),
    constant("round", 1),
    constant("trunc", 1),
    predicate("is_nan", 1),
    predicate("is_finite", 1),
    predicate("is_infinite", 1),
    predicate("is_normal", 1),
    predicate("is_sign_positive", 1),
    predicate("is_sign_negative", 1),
];

/// The methods of tensors (`adjoint_runtime::Tensor`) and nalgebra matrices. The
/// elementwise float methods (`exp`, `tanh`, `powi`, …) apply to tensors too, through
/// the same rule traits (not to matrices: nalgebra's `exp` is the matrix exponential).
pub const TENSOR_METHODS: &[Prim] = &[
    general("t", 1, [rule("Transpose", "transpose_adjoint", &[]), N, N]),
    general("transpose", 1, [rule("Transpose", "transpose_adjoint", &[]), N, N]),
    general("transpose", 3, [rule("TransposeDims", "transpose_dims_adjoint", &[Op(1), Op(2)]), N, N]),
    general("reshape", 2, [rule("Reshape", "reshape_adjoint", X), N, N]),
    general("unsqueeze", 2, [rule("Unsqueeze", "unsqueeze_adjoint", &[Op(1)]), N, N]),
    general("broadcast_to", 2, [rule("BroadcastTo", "broadcast_to_adjoint", X), N, N]),
    general("sum_to_shape", 2, [rule("SumToShape", "sum_to_shape_adjoint", X), N, N]),
    general("narrow", 4, [rule("Narrow", "narrow_adjoint", &[Op(0), Op(1), Op(2)]), N, N]),
    general(
        "cat2",
        3,
        [rule("Cat2", "cat2_lhs_adjoint", &[Op(0), Op(2)]), rule("Cat2", "cat2_rhs_adjoint", &[Op(0), Op(2)]), N],
    ),
    general(
        "cat3",
        4,
        [
            rule("Cat3", "cat3_first_adjoint", &[Op(0), Op(3)]),
            rule("Cat3", "cat3_second_adjoint", &[Op(0), Op(1), Op(3)]),
            rule("Cat3", "cat3_third_adjoint", &[Op(0), Op(1), Op(3)]),
        ],
    ),
    general("select", 3, [rule("Select", "select_adjoint", &[Op(0), Op(1), Op(2)]), N, N]),
    general("index_rows", 2, [rule("IndexRows", "index_rows_adjoint", XY), N, N]),
    general("contiguous", 1, [Identity, N, N]),
    general("clone", 1, [Identity, N, N]),
    general("value", 1, [Identity, N, N]),
    general("matmul", 2, [rule("Matmul", "matmul_lhs_adjoint", XY), rule("Matmul", "matmul_rhs_adjoint", XY), N]),
    general("dot", 2, [rule("Dot", "dot_lhs_adjoint", &[Op(1)]), rule("Dot", "dot_rhs_adjoint", &[Op(0)]), N]),
    general(
        "component_mul",
        2,
        [
            rule("ComponentMul", "component_mul_lhs_adjoint", &[Op(1)]),
            rule("ComponentMul", "component_mul_rhs_adjoint", &[Op(0)]),
            N,
        ],
    ),
    general(
        "component_div",
        2,
        [
            rule("ComponentDiv", "component_div_lhs_adjoint", &[Op(1)]),
            rule("ComponentDiv", "component_div_rhs_adjoint", &[Op(1), Out]),
            N,
        ],
    ),
    general("add_scalar", 2, [Identity, rule("AddScalar", "add_scalar_scalar_adjoint", &[]), N]),
    general("sum", 1, [rule("Sum", "sum_adjoint", X), N, N]),
    general("mean", 1, [rule("Mean", "mean_adjoint", X), N, N]),
    general("sum_dim", 3, [rule("SumDim", "sum_dim_adjoint", &[Op(0), Op(1), Op(2)]), N, N]),
    general("mean_dim", 3, [rule("MeanDim", "mean_dim_adjoint", &[Op(0), Op(1), Op(2)]), N, N]),
    general("max_dim", 3, [rule("MaxDim", "max_dim_adjoint", &[Op(0), Out, Op(1), Op(2)]), N, N]),
    general("norm", 1, [rule("Norm", "norm_adjoint", &[Op(0), Out]), N, N]),
    general("norm_squared", 1, [rule("NormSquared", "norm_squared_adjoint", X), N, N]),
    general("sigmoid", 1, [rule("Sigmoid", "sigmoid_adjoint", Y), N, N]),
    general("relu", 1, [rule("Relu", "relu_adjoint", Y), N, N]),
    general("softmax", 2, [rule("Softmax", "softmax_adjoint", &[Out, Op(1)]), N, N]),
    general("log_softmax", 2, [rule("LogSoftmax", "log_softmax_adjoint", &[Out, Op(1)]), N, N]),
    general(
        "mse_loss",
        2,
        [rule("MseLoss", "mse_loss_lhs_adjoint", XY), rule("MseLoss", "mse_loss_rhs_adjoint", XY), N],
    ),
    general("cross_entropy", 2, [rule("CrossEntropy", "cross_entropy_adjoint", XY), N, N]),
    Prim { output: Output::Scalar, ..general("item", 1, [rule("Item", "item_adjoint", X), N, N]) },
    // nalgebra's Cholesky decomposition (`m.cholesky().expect(…)`, `solve`, `l()`).
    general("cholesky", 1, [rule("CholeskyOf", "cholesky_adjoint", X), N, N]),
    general("expect", 2, [rule("Unwrap", "expect_adjoint", X), N, N]),
    general("unwrap", 1, [rule("Unwrap", "unwrap_adjoint", X), N, N]),
    general(
        "solve",
        2,
        [
            rule("CholeskyUse", "solve_decomposition_adjoint", &[Op(0), Out]),
            rule("CholeskyUse", "solve_rhs_adjoint", X),
            N,
        ],
    ),
    general("l", 1, [rule("CholeskyUse", "l_adjoint", X), N, N]),
    general("diagonal", 1, [rule("Diagonal", "diagonal_adjoint", X), N, N]),
    constant("shape", 1),
    constant("argmax_dim", 2),
    constant("gt", 2),
    constant("lt", 2),
    constant("ge", 2),
    constant("le", 2),
    constant("zeros_like", 1),
    constant("ones_like", 1),
    integer("numel", 1),
    integer("ndim", 1),
    integer("nrows", 1),
    integer("ncols", 1),
];

/// The rule traits whose methods each have an accumulating form `{method}_into(&mut
/// acc, ȳ, needs…)`, which adds the contribution into an existing adjoint where it lies
/// (`acc += ȳ·bᵀ` without writing `ȳ·bᵀ` out first).
pub const ACCUMULATING_RULES: &[&str] = &["Matmul"];

/// The accumulating rules that also have a deferred form `{method}_deferred(&mut acc,
/// &mut pending, ȳ, needs…)`, for a loop whose other statements never read `acc`: the
/// contribution may be kept in `pending` (a `rules::OuterSum`), which generated code
/// adds into `acc` after the loop.
pub const DEFERRING_RULES: &[&str] = &["Matmul"];

/// Find a primitive method by name and number of operands (the receiver counts):
/// `transpose()` of a matrix and `transpose(d0, d1)` of a tensor are different primitives.
pub fn method(name: &str, arity: usize) -> Option<&'static Prim> {
    METHODS.iter().chain(TENSOR_METHODS).find(|p| p.name == name && p.arity == arity)
}

/// Whether some primitive method has this name (whatever its arity).
pub fn is_method_name(name: &str) -> bool {
    METHODS.iter().chain(TENSOR_METHODS).any(|p| p.name == name)
}

/// The names of the differentiable methods, for the "unknown method" hint.
pub fn method_names() -> String {
    let mut names: Vec<&str> = METHODS.iter().filter(|p| p.output.differentiable()).map(|p| p.name).collect();
    names.dedup();
    names.join(", ")
}

const ADD: Prim = prim2(
    "add",
    InputRule { scalar: Identity, general: rule("Add", "add_lhs_adjoint", XY) },
    InputRule { scalar: Identity, general: rule("Add", "add_rhs_adjoint", XY) },
);
const SUB: Prim = prim2(
    "sub",
    InputRule { scalar: Identity, general: rule("Sub", "sub_lhs_adjoint", XY) },
    InputRule { scalar: Negate, general: rule("Sub", "sub_rhs_adjoint", XY) },
);
const MUL: Prim = prim2(
    "mul",
    InputRule { scalar: rule("ScalarMul", "mul_adjoint", &[Op(1)]), general: rule("Mul", "mul_lhs_adjoint", XY) },
    InputRule { scalar: rule("ScalarMul", "mul_adjoint", &[Op(0)]), general: rule("Mul", "mul_rhs_adjoint", XY) },
);
const DIV: Prim = prim2(
    "div",
    InputRule { scalar: rule("ScalarDiv", "div_lhs_adjoint", &[Op(1)]), general: rule("Div", "div_lhs_adjoint", XY) },
    InputRule {
        scalar: rule("ScalarDiv", "div_rhs_adjoint", &[Op(1), Out]),
        general: rule("Div", "div_rhs_adjoint", XY),
    },
);
const REM: Prim = prim2(
    "rem",
    InputRule { scalar: Identity, general: rule("Rem", "rem_lhs_adjoint", XY) },
    same(rule("Rem", "rem_rhs_adjoint", XY)),
);
const NEG: Prim = prim1("neg", same(Negate));

/// The primitive behind a binary operator (comparisons and bit operations have none).
pub fn binary(op: BinOp) -> Option<&'static Prim> {
    match op {
        BinOp::Add => Some(&ADD),
        BinOp::Sub => Some(&SUB),
        BinOp::Mul => Some(&MUL),
        BinOp::Div => Some(&DIV),
        BinOp::Rem => Some(&REM),
        _ => None,
    }
}

pub fn neg() -> &'static Prim {
    &NEG
}
