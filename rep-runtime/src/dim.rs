//! Dimensions known at compile time ([`Const`]) or at run time (`usize`), as in dfdx.
//!
//! A block generic over `D: Dim` serves both: with `Const<N>` its geometry checks run at
//! compile time (inline `const` assertions over [`Dim::STATIC`]); with `usize` the same checks
//! run when the block is constructed and return an error. The `const fn`s below combine
//! optional static sizes for those assertions: an unknown (`None`) size never fails a check.

use std::fmt::Debug;

/// A dimension: a size fixed by the type ([`Const`]) or carried at run time (`usize`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a dimension",
    label = "use `rep::Const<N>` for a size known at compile time or `usize` for one known at run time"
)]
pub trait Dim: Copy + Debug + Send + Sync + 'static {
    /// The size when the type fixes it.
    const STATIC: Option<usize>;

    /// The size.
    fn size(self) -> usize;

    /// The dimension of a run-time size; `Const<N>` refuses any size but `N`.
    fn from_size(size: usize) -> crate::Result<Self>;
}

/// A size known at compile time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Const<const N: usize>;

impl<const N: usize> Dim for Const<N> {
    const STATIC: Option<usize> = Some(N);

    fn size(self) -> usize {
        N
    }

    fn from_size(size: usize) -> crate::Result<Self> {
        if size == N {
            Ok(Const)
        } else {
            Err(crate::Error::Geometry(format!("expected the compile-time size {N}, found {size}")))
        }
    }
}

impl Dim for usize {
    const STATIC: Option<usize> = None;

    fn size(self) -> usize {
        self
    }

    fn from_size(size: usize) -> crate::Result<Self> {
        Ok(size)
    }
}

/// `a + b` when both are known and the sum fits.
pub const fn add(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => a.checked_add(b),
        _ => None,
    }
}

/// `a − b` when both are known (saturating at 0; the checks then report the mismatch).
pub const fn sub(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_sub(b)),
        _ => None,
    }
}

/// `a · b` when both are known and the product fits.
pub const fn mul(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => a.checked_mul(b),
        _ => None,
    }
}

/// `a / b` when both are known and `b ≠ 0`.
pub const fn div(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0 => Some(a / b),
        _ => None,
    }
}

/// True only when both are known and differ.
pub const fn differ(a: Option<usize>, b: Option<usize>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

/// True only when both are known and `a > b`.
pub const fn exceeds(a: Option<usize>, b: Option<usize>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a > b)
}

/// True only when `a` is known and even.
pub const fn is_even(a: Option<usize>) -> bool {
    matches!(a, Some(a) if a % 2 == 0)
}

/// True only when both are known and `b` does not divide `a` (or `b` is 0).
pub const fn not_divisible(a: Option<usize>, b: Option<usize>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if b == 0 || a % b != 0)
}

/// The size at position `role` of a block's sizes (`None` when unknown or out of range): a
/// stage's input or output channels from the literal sizes it is declared with
/// ([`crate::StageRoles`] gives the positions).
pub const fn stage_size(role: Option<usize>, sizes: &[Option<usize>]) -> Option<usize> {
    match role {
        Some(i) if i < sizes.len() => sizes[i],
        _ => None,
    }
}

pub use rep_rules::{make_divisible, reach};

/// `⌈a / b⌉`, 0 when `b` is 0 (as `/` in generated code).
pub const fn div_ceil(a: usize, b: usize) -> usize {
    if b == 0 { 0 } else { a.div_ceil(b) }
}

/// [`make_divisible`] when both are known.
pub const fn option_make_divisible(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(make_divisible(a, b)),
        _ => None,
    }
}

/// [`reach`] when both are known.
pub const fn option_reach(dilation: Option<usize>, kernel: Option<usize>) -> Option<usize> {
    match (dilation, kernel) {
        (Some(d), Some(k)) => Some(reach(d, k)),
        _ => None,
    }
}

/// The larger when both are known.
pub const fn option_max(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a > b { a } else { b }),
        _ => None,
    }
}

/// [`div_ceil`] when both are known and `b ≠ 0`.
pub const fn option_div_ceil(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0 => Some(a.div_ceil(b)),
        _ => None,
    }
}
