//! The one place the kernels ask which instructions this CPU has.

/// Whether the AVX-512 kernels run: the CPU has AVX-512F and `REP_PORTABLE_KERNELS` is unset
/// (set it to run the portable kernels instead, e.g. to test them on an AVX-512 machine).
/// Decided once per process.
pub(crate) fn avx512() -> bool {
    static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX512.get_or_init(|| {
        let detected = {
            #[cfg(target_arch = "x86_64")]
            {
                std::arch::is_x86_feature_detected!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                false
            }
        };
        detected && std::env::var_os("REP_PORTABLE_KERNELS").is_none()
    })
}
