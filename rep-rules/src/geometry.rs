//! The geometry rules of fusion, per spatial axis.

/// How far a dilated kernel reaches beyond its first tap: `d·(k − 1)` (its extent minus one;
/// 0 for `k = 0`, saturating instead of overflowing).
///
/// ```
/// assert_eq!(rep_rules::reach(1, 3), 2);
/// assert_eq!(rep_rules::reach(2, 3), 4);
/// ```
pub const fn reach(dilation: usize, kernel: usize) -> usize {
    dilation.saturating_mul(kernel.saturating_sub(1))
}

/// Twice the offset from an output position to the centre of the window it reads, in input
/// positions before the stride: `2p − d·(k − 1)`. **The centre law:** convolutions with the
/// same stride read windows with the same centres exactly when these agree, and only then
/// does summing them (the smaller kernels zero-padded around their centre) give one
/// convolution. A branch with kernel `k` and dilation `d` is centred on a reference window
/// `(P, K, D)` by the padding `p = (2P − D·(K − 1) + d·(k − 1)) / 2`.
///
/// ```
/// // A 3×3 with padding 1 and a 1×1 without padding share their centres…
/// assert_eq!(rep_rules::centre_offset2(1, 1, 3), rep_rules::centre_offset2(0, 1, 1));
/// // …a 1×1 with padding 1 does not.
/// assert_ne!(rep_rules::centre_offset2(1, 1, 3), rep_rules::centre_offset2(1, 1, 1));
/// ```
pub const fn centre_offset2(padding: usize, dilation: usize, kernel: usize) -> isize {
    2 * padding as isize - reach(dilation, kernel) as isize
}

/// The groups of the convolution that two stacked convolutions with `g1` and `g2` groups merge
/// into: equal or nested groupings give the smaller count (each merged group then reads only its
/// own inputs), any other pair gives a dense convolution (1 group).
///
/// ```
/// assert_eq!(rep_rules::merged_groups(4, 4), 4);
/// assert_eq!(rep_rules::merged_groups(8, 2), 2);
/// assert_eq!(rep_rules::merged_groups(2, 3), 1);
/// ```
pub const fn merged_groups(g1: usize, g2: usize) -> usize {
    if g1 == 0 || g2 == 0 {
        return 1;
    }
    if g1.is_multiple_of(g2) || g2.is_multiple_of(g1) { if g1 < g2 { g1 } else { g2 } } else { 1 }
}

/// timm's `make_divisible(v, divisor)` on integers, the width rule of its SE layers: `v`
/// rounded to the nearest multiple of `divisor`, at least `divisor`, and one `divisor` more when
/// rounding down lost over 10 % (`divisor = 0` leaves `v`).
///
/// ```
/// assert_eq!(rep_rules::make_divisible(30, 8), 32);
/// assert_eq!(rep_rules::make_divisible(3, 8), 8);
/// ```
pub const fn make_divisible(v: usize, divisor: usize) -> usize {
    if divisor == 0 {
        return v;
    }
    let rounded = (v + divisor / 2) / divisor * divisor;
    let rounded = if rounded < divisor { divisor } else { rounded };
    if 10 * rounded < 9 * v { rounded + divisor } else { rounded }
}
