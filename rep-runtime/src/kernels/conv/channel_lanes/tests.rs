use super::*;
use crate::kernels::conv::{ConvOperands, PackedConv, conv2d_then};
use crate::kernels::test_values as values;
use ndarray::{Array1, Array4, ArrayView4};

/// `PackedConv` (which lays these layers out for the channel-lanes kernel) against the
/// unpacked convolution, NaN for NaN, on a batch of two (which small maps of a wide layer, as
/// in the 80→32 and 300→64 cases, run at once: `batch`).
fn check(case: &str, g: &ConvGeometry, height: usize, width: usize, bias: bool, activation: Activation) {
    assert!(suits(g, false), "{case}: should take the channel-lanes kernel");
    let shape = [2, g.in_channels, height, width];
    let weight = Array4::from_shape_vec(g.weight_shape(), values(g.weight_count(), 7)).unwrap();
    let bias = bias.then(|| Array1::from(values(g.out_channels, 8)));
    let operands = ConvOperands { weight: weight.view(), bias: bias.as_ref().map(|b| b.view()), pad_fill: None };
    let mut x = values(shape.iter().product(), 10);
    x[3 * width + 5] = f32::NAN;
    let expected = conv2d_then(ArrayView4::from_shape(shape, &x).unwrap(), g, operands, activation).unwrap();
    let packed = PackedConv::new(g, operands).unwrap();
    assert!(matches!(packed.packing, crate::kernels::conv::Packing::Lanes(_)), "{case}: laid out for the lanes");
    let mut y = vec![f32::NAN; expected.len()];
    packed.run_into(&x, shape, activation, &mut y).unwrap();
    crate::kernels::assert_matches_with_nan(case, &y, &expected);
}

#[test]
fn strided_layers_match_the_unpacked_convolution() {
    let relu = Activation::Relu;
    // One block of 3 vectors; odd sizes, so the last output column reads the right padding.
    check("16->48 s2", &ConvGeometry::new(16, 48, 3).stride(2).padding(1), 9, 13, true, relu);
    // Two blocks of 3 vectors, the second 22 channels short; SiLU.
    check("20->70 s2", &ConvGeometry::new(20, 70, 3).stride(2).padding(1), 11, 12, true, Activation::Silu);
    // One vector; stride in one direction only; no bias.
    check("8->16 s(2,1)", &ConvGeometry::new(8, 16, 3).stride((2, 1)).padding(1), 10, 7, false, relu);
    // Two vectors; a 3×5 kernel, dilated rows, padding that reaches two columns in.
    let g = ConvGeometry::new(12, 32, (3, 5)).stride(2).padding((1, 2)).dilation((2, 1));
    check("12->32 3x5 dilated", &g, 12, 15, true, relu);
    // Four vectors; a 5×5 kernel at stride 3: several border rows and columns.
    check("9->64 5x5 s3", &ConvGeometry::new(9, 64, 5).stride(3).padding(2), 17, 16, true, relu);
    // Groups.
    check("24->24 g2", &ConvGeometry::new(24, 24, 3).stride(2).padding(1).groups(2), 8, 9, true, relu);
    // Positions whose every tap is padding: the output is the bias alone.
    check("80->32 1x1 s2 p1", &ConvGeometry::new(80, 32, 1).stride(2).padding(1), 5, 6, true, relu);
    // Taps whose weights exceed a part: summed in three parts, finished by the last.
    check("300->64", &ConvGeometry::new(300, 64, 3).stride(2).padding(1), 5, 6, true, Activation::Silu);
    // A map cut into several bands of output rows.
    check("16->32 tall", &ConvGeometry::new(16, 32, 3).stride(2).padding(1), 150, 40, true, relu);
}

#[test]
fn the_rule_keeps_shallow_pointwise_and_filled_layers_on_the_gemm() {
    let g = ConvGeometry::new(48, 48, 3).stride(2).padding(1);
    assert!(suits(&g, false));
    assert!(!suits(&g, true), "a pad fill");
    assert!(!suits(&ConvGeometry::new(3, 48, 3).stride(2).padding(1), false), "depth 27");
    assert!(!suits(&ConvGeometry::new(48, 48, 3).padding(1), false), "stride 1");
    assert!(!suits(&ConvGeometry::new(64, 64, 1), false), "pointwise");
    assert!(addressable(&g, 1 << 10, 1 << 10));
    assert!(!addressable(&g, 1 << 14, 1 << 14), "48 planes of 2^28 values");
}

/// The AVX-512 kernel (where the CPU has it), the portable one and the portable one compiled
/// for AVX2 and FMA store the same values, in both passes, for a call that repeats its last
/// position (as a class's last call does, which must not add the earlier sums twice).
#[test]
fn the_portable_kernel_matches_the_avx512_one() {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::isa::avx512() && std::arch::is_x86_feature_detected!("fma") {
        const P: usize = 7;
        let (depth, channels) = (30, 40);
        let w = ChannelBlocks::new(&values(channels * depth, 1), channels, depth);
        let x = values(400, 2);
        let taps: Vec<Tap> = (0..depth).map(|k| [(k * w.width()) as u32, (k * 11 % 97) as u32]).collect();
        let bias = values(channels, 3);
        // Positions 5 and 6 repeat position 4.
        let position = |j: usize| j.min(4);
        for pass in [Pass { accumulate: false, finish: true }, Pass { accumulate: true, finish: false }] {
            let mut outputs = [values(channels * 20, 4), values(channels * 20, 4), values(channels * 20, 4)];
            for (which, c) in outputs.iter_mut().enumerate() {
                let tile = Tile::<P> {
                    origins: std::array::from_fn(|j| x[position(j) * 37..].as_ptr()),
                    next: x.as_ptr(),
                    upcoming: x.as_ptr(),
                    columns: std::array::from_fn(|j| 2 * position(j) + 1),
                    out: BlockOutput {
                        c: c.as_mut_ptr(),
                        ldc: 20,
                        channels,
                        bias: bias.as_ptr(),
                        activation: Activation::Relu,
                    },
                    pass,
                };
                // SAFETY: every tap and position stays inside `x` (4·37 + 96 < 400), the block
                // inside `c` (40 rows of 20, columns up to 9); AVX-512F and FMA checked above.
                unsafe {
                    match which {
                        0 => avx512::kernel::<3, P>(&taps, w.block(0).as_ptr(), &tile),
                        1 => portable_kernel::<3, P>(&taps, w.block(0).as_ptr(), &tile),
                        _ => portable::avx2_kernel::<3, P>(&taps, w.block(0).as_ptr(), &tile),
                    }
                }
            }
            assert_eq!(outputs[0], outputs[1], "portable, accumulate {}", pass.accumulate);
            assert_eq!(outputs[0], outputs[2], "AVX2, accumulate {}", pass.accumulate);
        }
    }
}
