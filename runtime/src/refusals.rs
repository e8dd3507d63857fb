//! Traits with no implementation whose messages explain a misuse, for the generated
//! companions of methods (an `impl` cannot hold the per-function traits that free
//! functions' modules do). A refusing companion requires `&'a (): Trait<…>`, so calling
//! it is a compile error with the message, at the call.

/// `grad!` of a method whose output is not a scalar.
#[diagnostic::on_unimplemented(
    message = "`grad!` needs a function with a scalar float output, but this method returns `{Output}`",
    label = "not a scalar output",
    note = "for a non-scalar output use `vjp!(Type::method)(args…, cotangent)`: its last argument is the output's cotangent"
)]
pub trait GradNeedsScalarOutput<Output: ?Sized> {}

/// `value_and_grad!` of a method whose output is not a scalar.
#[diagnostic::on_unimplemented(
    message = "`value_and_grad!` needs a function with a scalar float output, but this method returns `{Output}`",
    label = "not a scalar output",
    note = "for a non-scalar output use `vjp!(Type::method)(args…, cotangent)`: its last argument is the output's cotangent"
)]
pub trait ValueAndGradNeedsScalarOutput<Output: ?Sized> {}
