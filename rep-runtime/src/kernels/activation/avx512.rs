//! SiLU and the sigmoid sixteen lanes at a time, on an AVX-512 `eˣ`: `x = n·ln 2 + r` with
//! `n = round(x / ln 2)` and `|r| ≤ ln 2 / 2`, `eʳ` by Cephes' degree-6 polynomial (within about
//! one ulp), and `2ⁿ` applied by `scalef`, which saturates to ∞ and 0 exactly. The input is first
//! clamped to [−104, 89] (beyond which `eˣ` is 0 or ∞ in f32) in the operand order that keeps
//! NaN, so NaN stays NaN and ±∞ give the limits.

use super::Activation;
use std::arch::x86_64::*;

const LOG2_E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two, so that `x − n·ln 2` loses no bits: `LN2_HI` has few significant bits.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` coefficients for `(eʳ − 1 − r) / r²`, highest degree first.
const POLY: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];

/// `eˣ` per lane.
#[target_feature(enable = "avx512f")]
fn exp(x: __m512) -> __m512 {
    // `max(c, x)` and `min(c, x)` return `x` when it is NaN.
    let x = _mm512_min_ps(_mm512_set1_ps(89.0), _mm512_max_ps(_mm512_set1_ps(-104.0), x));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        x,
        _mm512_set1_ps(LOG2_E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let p = POLY[1..].iter().fold(_mm512_set1_ps(POLY[0]), |p, &c| _mm512_fmadd_ps(p, r, _mm512_set1_ps(c)));
    // eʳ ≈ 1 + r + r²·p
    let e_r = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(r, r), p, r), _mm512_set1_ps(1.0));
    _mm512_scalef_ps(e_r, n)
}

/// `x / (1 + e^(−x))` (SiLU) or `1 / (1 + e^(−x))` (the sigmoid) per lane.
#[target_feature(enable = "avx512f")]
fn over_one_plus_exp_neg(x: __m512, silu: bool) -> __m512 {
    let one = _mm512_set1_ps(1.0);
    let denominator = _mm512_add_ps(one, exp(_mm512_sub_ps(_mm512_setzero_ps(), x)));
    _mm512_div_ps(if silu { x } else { one }, denominator)
}

/// The activation of sixteen lanes, as [`Activation::apply`] computes each (NaN stays NaN:
/// the comparisons are ordered, so NaN lanes keep `x`).
#[target_feature(enable = "avx512f")]
pub(crate) fn lanes(activation: Activation, x: __m512) -> __m512 {
    match activation {
        Activation::Identity => x,
        Activation::Relu => {
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
            _mm512_mask_mov_ps(x, negative, _mm512_setzero_ps())
        }
        Activation::LeakyRelu(slope) => {
            let negative = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_setzero_ps());
            _mm512_mask_mul_ps(x, negative, x, _mm512_set1_ps(slope))
        }
        Activation::Silu => over_one_plus_exp_neg(x, true),
        Activation::Sigmoid => over_one_plus_exp_neg(x, false),
    }
}

/// `f(x, e^(−x))` over `values` in place: SiLU is `x / (1 + e^(−x))`, the sigmoid `1 / (1 + e^(−x))`.
///
/// # Safety
/// The CPU supports AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn map_with_exp_neg(values: &mut [f32], silu: bool) {
    let mut chunks = values.chunks_exact_mut(16);
    let apply = |x: __m512| over_one_plus_exp_neg(x, silu);
    for chunk in &mut chunks {
        // SAFETY: a chunk of exactly 16 floats.
        unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), apply(_mm512_loadu_ps(chunk.as_ptr()))) };
    }
    let rest = chunks.into_remainder();
    let mask = crate::kernels::lane_mask(rest.len());
    // SAFETY: the mask keeps to the `rest.len() < 16` floats of the remainder.
    unsafe {
        let x = _mm512_maskz_loadu_ps(mask, rest.as_ptr());
        _mm512_mask_storeu_ps(rest.as_mut_ptr(), mask, apply(x));
    }
}
