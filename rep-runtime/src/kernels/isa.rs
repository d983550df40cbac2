//! The one place the kernels ask which instructions this CPU has.
//!
//! Three tiers: the AVX-512 kernels; the portable kernels compiled for AVX2 and FMA (the
//! x86-64 CPUs of the last decade without AVX-512); the portable kernels as plain code.
//! `REP_PORTABLE_KERNELS=1` skips the first tier (to test the portable kernels on an AVX-512
//! machine), `REP_PORTABLE_KERNELS=plain` the first two.

/// Whether the AVX-512 kernels run: the CPU has AVX-512F and `REP_PORTABLE_KERNELS` is unset.
/// Decided once per process.
pub(crate) fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let detected = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let detected = false;
        detected && std::env::var_os("REP_PORTABLE_KERNELS").is_none()
    })
}

/// Whether the portable micro-kernels run compiled for AVX2 and FMA: the CPU has both, the
/// AVX-512 kernels do not run, and `REP_PORTABLE_KERNELS` is not `plain`. Without FMA, the
/// kernels' fused multiply-adds (`f32::mul_add`, kept for sums equal to the AVX-512 kernels')
/// are calls to libm's `fmaf`, about a hundred times slower. Decided once per process.
pub(crate) fn avx2_fma() -> bool {
    static AVX2_FMA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2_FMA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let detected = std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let detected = false;
        detected && !avx512() && std::env::var_os("REP_PORTABLE_KERNELS").is_none_or(|v| v != "plain")
    })
}
