//! Support types and helpers called by generated code.
//!
//! Nothing here knows about derivatives: these are the containers the reverse sweep
//! uses (a tape of saved values, a one-value slot), and the shape-preserving
//! operations on adjoints (zeros of the same shape, accumulation).

use crate::Float;

pub use crate::tape::{Segment, Tape};

/// A value saved in a branch of the forward sweep and read back in the same branch of
/// the reverse sweep (no allocation).
#[derive(Debug)]
pub struct Slot<T> {
    value: Option<T>,
}

impl<T> Slot<T> {
    #[inline]
    pub fn new() -> Self {
        Slot { value: None }
    }

    #[inline]
    pub fn save(&mut self, value: T) {
        self.value = Some(value);
    }

    #[inline]
    pub fn load(&mut self) -> T {
        match self.value.take() {
            Some(v) => v,
            None => slot_empty(),
        }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot::new()
    }
}

#[cold]
#[inline(never)]
fn slot_empty() -> ! {
    panic!(
        "adjoint: the reverse sweep read a value its branch did not save (this is a bug in adjoint; please report it)"
    )
}

/// Values that have a zero of the same shape and can be added up in place.
pub trait Adjoint: Sized {
    /// A zero with the same shape as `self`.
    fn zero_like(&self) -> Self;
    /// `self += other`; panics with both shapes if they differ.
    fn accumulate(&mut self, other: Self);

    /// Whether this is a zero made by `zero_like` that nothing has been added to: the
    /// output did not depend on the value, so a leaf keeps no gradient for it.
    fn is_untouched_zero(&self) -> bool {
        false
    }

    /// Zeros shaped like each element of `values`.
    fn zeros_like_each(values: &[Self]) -> Vec<Self> {
        values.iter().map(Adjoint::zero_like).collect()
    }
}

impl<F: Float> Adjoint for F {
    #[inline]
    fn zero_like(&self) -> Self {
        F::ZERO
    }
    #[inline]
    fn accumulate(&mut self, other: Self) {
        *self += other;
    }

    /// Zeros written explicitly rather than `vec![0.0; n]`: an adjoint buffer is read
    /// before it is written (`x_bar[i] += …`), and on fresh zeroed pages from the
    /// allocator that read-then-write costs two page faults per page instead of one.
    #[inline]
    fn zeros_like_each(values: &[Self]) -> Vec<Self> {
        let mut out = Vec::with_capacity(values.len());
        out.resize(values.len(), F::ZERO);
        out
    }
}

impl<T: Adjoint + Clone> Adjoint for Vec<T> {
    fn zero_like(&self) -> Self {
        T::zeros_like_each(self)
    }
    fn accumulate(&mut self, other: Self) {
        accumulate_slice(self, &other);
    }
}

impl<T: Adjoint + Clone, const N: usize> Adjoint for [T; N] {
    fn zero_like(&self) -> Self {
        core::array::from_fn(|i| self[i].zero_like())
    }
    fn accumulate(&mut self, other: Self) {
        for (a, b) in self.iter_mut().zip(other) {
            a.accumulate(b);
        }
    }
}

impl Adjoint for () {
    fn zero_like(&self) -> Self {}
    fn accumulate(&mut self, _: Self) {}
}

macro_rules! tuple_adjoint {
    ($($name:ident $idx:tt),*) => {
        impl<$($name: Adjoint),*> Adjoint for ($($name,)*) {
            fn zero_like(&self) -> Self {
                ($(self.$idx.zero_like(),)*)
            }
            fn accumulate(&mut self, other: Self) {
                $(self.$idx.accumulate(other.$idx);)*
            }
        }
    };
}
tuple_adjoint!(A 0);
tuple_adjoint!(A 0, B 1);
tuple_adjoint!(A 0, B 1, C 2);
tuple_adjoint!(A 0, B 1, C 2, D 3);
tuple_adjoint!(A 0, B 1, C 2, D 3, E 4);
tuple_adjoint!(A 0, B 1, C 2, D 3, E 4, F 5);

/// `*acc += value`.
#[inline]
pub fn accumulate<T: Adjoint>(acc: &mut T, value: T) {
    acc.accumulate(value);
}

/// Elementwise `dst += src` over a slice (a gradient returned for a sub-slice).
#[inline]
pub fn accumulate_slice<T: Adjoint + Clone>(dst: &mut [T], src: &[T]) {
    if dst.len() != src.len() {
        length_mismatch(dst.len(), src.len());
    }
    for (d, s) in dst.iter_mut().zip(src) {
        d.accumulate(s.clone());
    }
}

#[cold]
#[inline(never)]
fn length_mismatch(dst: usize, src: usize) -> ! {
    panic!("adjoint: a gradient of length {src} was returned for a slice of length {dst}")
}

/// Values with a zero gradient of the right shape: `zero_tangent(&x)` has the type of
/// `x`'s gradient (for a tensor, a tensor of zeros; for a parameter, a zero of its
/// value's gradient; for a `#[derive(Differentiable)]` struct, its tangent struct).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no gradient type, but it is an argument adjoint differentiates",
    label = "no gradient type",
    note = "add `#[derive(Differentiable)]` to `{Self}` (its float, vector and array fields get gradients, its integer fields none), or leave the argument out of the gradient with `#[differentiable(wrt(…))]` or `#[no_grad]` on it"
)]
pub trait ZeroTangent: Tangent {
    fn zero_tangent(&self) -> Self::Tangent;

    /// Zeros shaped like each element of `values` (the gradient of a slice).
    fn zero_tangents(values: &[Self]) -> Vec<Self::Tangent>
    where
        Self: Sized,
    {
        values.iter().map(ZeroTangent::zero_tangent).collect()
    }
}

macro_rules! float_zero_tangent {
    ($($f:ty),*) => {$(
        impl ZeroTangent for $f {
            #[inline]
            fn zero_tangent(&self) -> $f {
                0.0
            }
            /// See [`Adjoint::zeros_like_each`]: zeroed pages, written once.
            #[inline]
            fn zero_tangents(values: &[$f]) -> Vec<$f> {
                <$f as Adjoint>::zeros_like_each(values)
            }
        }
    )*};
}
float_zero_tangent!(f32, f64);

impl<T: ZeroTangent> ZeroTangent for Vec<T> {
    fn zero_tangent(&self) -> Vec<T::Tangent> {
        T::zero_tangents(self)
    }
}

impl<T: ZeroTangent> ZeroTangent for [T] {
    fn zero_tangent(&self) -> Vec<T::Tangent> {
        T::zero_tangents(self)
    }
}

impl<T: ZeroTangent, const N: usize> ZeroTangent for [T; N] {
    fn zero_tangent(&self) -> [T::Tangent; N] {
        core::array::from_fn(|i| self[i].zero_tangent())
    }
}

impl<T: ZeroTangent + ?Sized> ZeroTangent for &T {
    #[inline]
    fn zero_tangent(&self) -> T::Tangent {
        (**self).zero_tangent()
    }
}

impl ZeroTangent for () {
    fn zero_tangent(&self) {}
}

macro_rules! tuple_zero_tangent {
    ($($name:ident $idx:tt),*) => {
        impl<$($name: ZeroTangent),*> ZeroTangent for ($($name,)*) {
            fn zero_tangent(&self) -> Self::Tangent {
                ($(self.$idx.zero_tangent(),)*)
            }
        }
    };
}
tuple_zero_tangent!(A 0);
tuple_zero_tangent!(A 0, B 1);
tuple_zero_tangent!(A 0, B 1, C 2);
tuple_zero_tangent!(A 0, B 1, C 2, D 3);
tuple_zero_tangent!(A 0, B 1, C 2, D 3, E 4);
tuple_zero_tangent!(A 0, B 1, C 2, D 3, E 4, G 5);

/// A zero gradient shaped like `x`.
#[inline]
pub fn zero_like<T: ZeroTangent>(x: &T) -> T::Tangent {
    x.zero_tangent()
}

/// Values with a one of the same shape (the seed of a scalar output).
pub trait Seed {
    fn one_like(&self) -> Self;
}

impl<F: Float> Seed for F {
    #[inline]
    fn one_like(&self) -> Self {
        F::ONE
    }
}

/// One with the shape of `x`.
#[inline]
pub fn one_like<T: Seed>(x: &T) -> T {
    x.one_like()
}

/// Containers whose adjoint is a buffer of zeros with the same length.
pub trait ZerosLike {
    type Buffer;
    fn zeros_like(&self) -> Self::Buffer;
}

// The elements' gradients: the elements' own type for floats, rows and the runtime's
// types, the generated tangent struct for a `#[derive(Differentiable)]` struct.
impl<T: ZeroTangent> ZerosLike for [T] {
    type Buffer = Vec<T::Tangent>;
    #[inline]
    fn zeros_like(&self) -> Vec<T::Tangent> {
        T::zero_tangents(self)
    }
}

impl<T: ZeroTangent> ZerosLike for Vec<T> {
    type Buffer = Vec<T::Tangent>;
    #[inline]
    fn zeros_like(&self) -> Vec<T::Tangent> {
        T::zero_tangents(self)
    }
}

impl<T: ZeroTangent, const N: usize> ZerosLike for [T; N] {
    type Buffer = [T::Tangent; N];
    fn zeros_like(&self) -> [T::Tangent; N] {
        core::array::from_fn(|i| self[i].zero_tangent())
    }
}

impl<T: ZerosLike + ?Sized> ZerosLike for &T {
    type Buffer = T::Buffer;
    fn zeros_like(&self) -> T::Buffer {
        (**self).zeros_like()
    }
}

/// A buffer of zeros shaped like `x` (a slice, a vector or an array).
#[inline]
pub fn zeros_like<T: ZerosLike + ?Sized>(x: &T) -> T::Buffer {
    x.zeros_like()
}

/// Pop the last element of a buffer (`stack.pop().unwrap()` in the user's code) or of a
/// buffer's adjoint (the reverse of `push`).
#[inline]
#[track_caller]
pub fn pop<T>(v: &mut Vec<T>) -> T {
    match v.pop() {
        Some(x) => x,
        None => panic!(
            "adjoint: `pop()` of an empty buffer (the function unwraps `pop()` of an empty `Vec`; if it does not, this is a bug in adjoint: please report it)"
        ),
    }
}

/// How many indices a loop's iteration space visits (`(a..b).rev().step_by(k)`).
#[inline]
pub fn range_len<I: Iterator>(range: I) -> usize {
    range.size_hint().0
}

/// The index a loop's iteration space visits at position `n` (`0` is the first): a
/// reversed or stepped range computes it without walking the ones before.
#[inline]
pub fn range_nth<I: Iterator>(mut range: I, n: usize) -> I::Item {
    match range.nth(n) {
        Some(i) => i,
        None => panic!("adjoint: position {n} is past the end of a loop's range (a bug in the generated code)"),
    }
}

/// The value of a variable assigned inside a loop and read after it (the value of
/// `loop { … break v; }`): generated code declares it `None` and assigns `Some(v)`,
/// because rustc cannot see that the loop assigns it before it exits.
#[inline]
pub fn late_ref<T>(v: &Option<T>) -> &T {
    match v {
        Some(x) => x,
        None => late_unassigned(),
    }
}

/// [`late_ref`], taking the value.
#[inline]
pub fn late_value<T>(v: Option<T>) -> T {
    match v {
        Some(x) => x,
        None => late_unassigned(),
    }
}

/// [`late_ref`], to write in place (an accumulator of a loop's value).
#[inline]
pub fn late_mut<T>(v: &mut Option<T>) -> &mut T {
    match v {
        Some(x) => x,
        None => late_unassigned(),
    }
}

/// The zero of a loop's value, if the loop assigned it: a loop that `return`ed first
/// leaves nothing to shape the zero by, and then the reverse sweep never reads it.
#[inline]
pub fn late_zero<T: ZeroTangent>(v: &Option<T>) -> Option<T::Tangent> {
    v.as_ref().map(ZeroTangent::zero_tangent)
}

#[cold]
#[inline(never)]
fn late_unassigned() -> ! {
    panic!("adjoint: a loop's value was read before the loop assigned it (a bug in the generated code)")
}

/// The type of the gradient of a value of type `Self` (`f64` → `f64`, `&[f64]` →
/// `Vec<f64>`, `usize` → `()`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no gradient type, but it is an argument adjoint differentiates",
    label = "no gradient type",
    note = "add `#[derive(Differentiable)]` to `{Self}` (its float, vector and array fields get gradients, its integer fields none), or leave the argument out of the gradient with `#[differentiable(wrt(…))]` or `#[no_grad]` on it"
)]
pub trait Tangent {
    type Tangent;
}

impl<T: Tangent + ?Sized> Tangent for &T {
    type Tangent = T::Tangent;
}

impl<T: Tangent> Tangent for [T] {
    type Tangent = Vec<T::Tangent>;
}

impl<T: Tangent> Tangent for Vec<T> {
    type Tangent = Vec<T::Tangent>;
}

impl<T: Tangent, const N: usize> Tangent for [T; N] {
    type Tangent = [T::Tangent; N];
}

macro_rules! no_tangent {
    ($($t:ty)*) => {$(
        impl Tangent for $t {
            type Tangent = ();
        }
    )*};
}
no_tangent!(bool char usize isize u8 u16 u32 u64 u128 i8 i16 i32 i64 i128 str String);

impl Tangent for () {
    type Tangent = ();
}

impl Tangent for f32 {
    type Tangent = f32;
}

impl Tangent for f64 {
    type Tangent = f64;
}

macro_rules! tuple_tangent {
    ($($name:ident),*) => {
        impl<$($name: Tangent),*> Tangent for ($($name,)*) {
            type Tangent = ($($name::Tangent,)*);
        }
    };
}
tuple_tangent!(A);
tuple_tangent!(A, B);
tuple_tangent!(A, B, C);
tuple_tangent!(A, B, C, D);
tuple_tangent!(A, B, C, D, E);
tuple_tangent!(A, B, C, D, E, G);

/// The value a derivative rule reads, seen through handles: a [`Param`](crate::Param)
/// or a reference gives its value, a tensor or a float itself. Generated code passes
/// `primal(&x)` to a rule so that a field holding a `Param<Tensor>` dispatches to the
/// tensor's rule.
pub trait Primal {
    type Value: ?Sized;
    fn primal(&self) -> &Self::Value;
}

/// `x` seen as the value a rule reads.
#[inline]
pub fn primal<T: Primal + ?Sized>(x: &T) -> &T::Value {
    x.primal()
}

impl<T: Primal + ?Sized> Primal for &T {
    type Value = T::Value;
    #[inline]
    fn primal(&self) -> &T::Value {
        (**self).primal()
    }
}

macro_rules! primal_is_self {
    ($($t:ty)*) => {$(
        impl Primal for $t {
            type Value = $t;
            #[inline]
            fn primal(&self) -> &$t {
                self
            }
        }
    )*};
}
// Integers: a field of a struct the macro cannot see into may be one (`p.degree as f64`).
primal_is_self!(f32 f64 usize isize u8 u16 u32 u64 i8 i16 i32 i64 bool);

impl<E: Float> Primal for crate::Tensor<E> {
    type Value = crate::Tensor<E>;
    #[inline]
    fn primal(&self) -> &Self {
        self
    }
}

impl<T: nalgebra::Scalar, R: nalgebra::Dim, C: nalgebra::Dim, S> Primal for nalgebra::Matrix<T, R, C, S> {
    type Value = Self;
    #[inline]
    fn primal(&self) -> &Self {
        self
    }
}

// ---- nalgebra matrices and vectors. The gradient of any matrix (a view included) is
// the owned matrix of the same dimensions: on the stack for static sizes, so the
// gradients of `SMatrix`/`SVector` functions allocate nothing.

use crate::rules::MatrixScalar;
use nalgebra::allocator::Allocator;
use nalgebra::{DefaultAllocator, Dim, Matrix, OMatrix, RawStorage};

impl<T: MatrixScalar, R: Dim, C: Dim, S> Tangent for Matrix<T, R, C, S>
where
    DefaultAllocator: Allocator<R, C>,
{
    type Tangent = OMatrix<T, R, C>;
}

impl<T: MatrixScalar, R: Dim, C: Dim, S: RawStorage<T, R, C>> ZeroTangent for Matrix<T, R, C, S>
where
    DefaultAllocator: Allocator<R, C>,
{
    fn zero_tangent(&self) -> OMatrix<T, R, C> {
        let (rows, cols) = self.shape_generic();
        OMatrix::zeros_generic(rows, cols)
    }
}

// A Cholesky decomposition's gradient is a decomposition holding Σ̄, the symmetric
// gradient with respect to the matrix it decomposes (see `rules::CholeskyOf`).
impl<T: MatrixScalar, D: Dim> Tangent for nalgebra::Cholesky<T, D>
where
    DefaultAllocator: Allocator<D, D>,
{
    type Tangent = Self;
}

impl<T: MatrixScalar, D: Dim> ZeroTangent for nalgebra::Cholesky<T, D>
where
    DefaultAllocator: Allocator<D, D>,
{
    fn zero_tangent(&self) -> Self {
        nalgebra::Cholesky::pack_dirty(self.l_dirty().zero_tangent())
    }
}

impl<T: MatrixScalar, D: Dim> Adjoint for nalgebra::Cholesky<T, D>
where
    DefaultAllocator: Allocator<D, D>,
{
    fn zero_like(&self) -> Self {
        self.zero_tangent()
    }
    fn accumulate(&mut self, other: Self) {
        let mut sum = self.l_dirty().clone();
        Adjoint::accumulate(&mut sum, other.unpack_dirty());
        *self = nalgebra::Cholesky::pack_dirty(sum);
    }
}

impl<T: MatrixScalar, D: Dim> Primal for nalgebra::Cholesky<T, D>
where
    DefaultAllocator: Allocator<D, D>,
{
    type Value = Self;
    #[inline]
    fn primal(&self) -> &Self {
        self
    }
}

// An `Option` (a decomposition that may fail) has the gradient of what it holds.
impl<T: Tangent> Tangent for Option<T> {
    type Tangent = Option<T::Tangent>;
}

impl<T: ZeroTangent> ZeroTangent for Option<T> {
    fn zero_tangent(&self) -> Option<T::Tangent> {
        self.as_ref().map(ZeroTangent::zero_tangent)
    }
}

impl<T: Adjoint> Adjoint for Option<T> {
    fn zero_like(&self) -> Self {
        self.as_ref().map(Adjoint::zero_like)
    }
    fn accumulate(&mut self, other: Self) {
        match (self.as_mut(), other) {
            (Some(a), Some(b)) => a.accumulate(b),
            (None, Some(b)) => *self = Some(b),
            (_, None) => {}
        }
    }
}

impl<T> Primal for Option<T> {
    type Value = Self;
    #[inline]
    fn primal(&self) -> &Self {
        self
    }
}

// A rotation's gradient is a rotation holding the gradient of its matrix, which is any
// D×D matrix (not a rotation matrix): the rules' convention that an operand's adjoint
// has the operand's type. `Rotation2::new(θ)` reads the angle's gradient from it.
impl<T: MatrixScalar, const D: usize> Tangent for nalgebra::Rotation<T, D> {
    type Tangent = Self;
}

impl<T: MatrixScalar, const D: usize> ZeroTangent for nalgebra::Rotation<T, D> {
    fn zero_tangent(&self) -> Self {
        nalgebra::Rotation::from_matrix_unchecked(nalgebra::SMatrix::zeros())
    }
}

impl<T: MatrixScalar, const D: usize> Adjoint for nalgebra::Rotation<T, D> {
    fn zero_like(&self) -> Self {
        self.zero_tangent()
    }
    fn accumulate(&mut self, other: Self) {
        *self = nalgebra::Rotation::from_matrix_unchecked(self.matrix() + other.matrix());
    }
}

impl<T: nalgebra::Scalar, const D: usize> Primal for nalgebra::Rotation<T, D> {
    type Value = Self;
    #[inline]
    fn primal(&self) -> &Self {
        self
    }
}

impl<T: MatrixScalar, R: Dim, C: Dim> Adjoint for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    fn zero_like(&self) -> Self {
        self.zero_tangent()
    }

    /// `self += other`; panics with both shapes if they differ (a `DMatrix` gradient of
    /// another shape is a bug, never broadcast).
    fn accumulate(&mut self, other: Self) {
        if self.shape() != other.shape() {
            matrix_shape_mismatch(self.shape(), other.shape());
        }
        *self += other;
    }
}

impl<T: MatrixScalar, R: Dim, C: Dim> Seed for OMatrix<T, R, C>
where
    DefaultAllocator: Allocator<R, C>,
{
    /// The seed of `grad!` for a matrix output: 1, for a 1×1 matrix only.
    fn one_like(&self) -> Self {
        if self.len() != 1 {
            panic!(
                "adjoint: `grad!` needs a scalar output, but the function returned a {}x{} matrix; \
                 use `vjp!` with a cotangent of that shape",
                self.nrows(),
                self.ncols()
            );
        }
        let (rows, cols) = self.shape_generic();
        OMatrix::from_element_generic(rows, cols, <T as crate::Float>::ONE)
    }
}

#[cold]
#[inline(never)]
fn matrix_shape_mismatch(acc: (usize, usize), other: (usize, usize)) -> ! {
    panic!(
        "adjoint: cannot accumulate a gradient of shape {}x{} into one of shape {}x{}",
        other.0, other.1, acc.0, acc.1
    )
}

/// Which arguments of a call need their gradients: bit `i` for argument `i`. Generated
/// code passes it to a callee's `__adjoint_d1_masked` companion, which then skips the
/// gradients of the other arguments (the input batch of a network's first layer).
#[derive(Clone, Copy, Debug)]
pub struct Mask<const BITS: u64>;

/// The bits of a [`Mask`]. Companions take the mask as `impl MaskBits`, so a user's
/// turbofish on a generic function (`f::<f64>`) still names all its explicit generics.
pub trait MaskBits {
    const BITS: u64;
}

impl<const BITS: u64> MaskBits for Mask<BITS> {
    const BITS: u64 = BITS;
}

/// The bits of `mask` (a constant after inlining).
#[inline(always)]
pub fn mask_bits<M: MaskBits>(_mask: &M) -> u64 {
    M::BITS
}
