//! Winograd band by band: a band (some rows of tiles of one image) goes from input transform to
//! output on one thread, with its `V` and `M` in that core's cache.
//!
//! Two cases choose bands ([`WinogradConv::bands`]):
//!
//! * **Large maps**, whose whole-batch `V` and `M` would overflow a core's cache: as many bands
//!   as keep each band's `V` and `M` in [`BAND_FLOATS`].
//! * **One image on several threads, with a small transformed kernel**: one share of the rows
//!   per thread, in one or two bands, so that each thread computes its own rows from input to
//!   output. The whole-layer path splits the transforms by channel and the products by position
//!   ξ, so `V` and `M` cross from core to core twice per layer; here only the input's edge rows
//!   do (when the layer before was cut the same way), at the price of every thread reading all
//!   of the transformed kernel (hence small ones only). When the host places the two vCPUs of
//!   our machines on different core complexes (a cache line's round trip about 420 ns instead of
//!   100), A0's 56² layer took 0.25–0.28 ms on two threads instead of 0.36–0.40, and its three
//!   28² layers 0.54–0.56 ms instead of 0.67–0.70 (15 interleaved pairs, in an experiment with
//!   bands of four rows of tiles); in the fast placement, the same within noise (0.215 against
//!   0.211 ms and 0.431 against 0.428, means of 60 pairs).

use super::{Tiling, WinogradConv};
use crate::geometry::Hw;
use crate::kernels::Activation;
use crate::kernels::scratch::{self, Buffer};
use crate::kernels::{SendPtr, even_part};
use rayon::prelude::*;
use std::ops::Range;

/// Floats of `V` and `M` per band (1 MiB: an L2 cache).
pub(super) const BAND_FLOATS: usize = 256 * 1024;

/// Fewest tiles per band worth computing band by band on a large map.
const MIN_BAND_TILES: usize = 64;

/// Fewest tiles per band when each thread takes its own bands: the products' columns fill
/// a 16-lane register. (A0's 14² layers, 4 × 4 tiles, would leave each of two threads 8, and
/// stay whole.)
const MIN_OWNED_BAND_TILES: usize = 16;

/// Most floats of a transformed kernel that every thread reads whole when each takes its own
/// bands (2 MiB): A0's 96-channel `U`, 1.3 MB, but not its 192-channel one (5.3 MB, streamed
/// from memory at each forward, which two threads would read twice).
const MAX_OWNED_KERNEL_FLOATS: usize = 1 << 19;

/// How the rows of tiles of each image are cut into bands: `groups` shares (one parallel job
/// each, computed band after band) of `per_group` bands, all cut evenly ([`even_part`]: shares
/// and bands each differ by at most one row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bands {
    pub(super) groups: usize,
    pub(super) per_group: usize,
    pub(super) rows: usize,
}

impl Bands {
    /// Rows of tiles of band `band` (`< per_group`) of share `group` (`< groups`).
    pub(super) fn band(&self, group: usize, band: usize) -> Range<usize> {
        even_part(self.rows, self.groups * self.per_group, group * self.per_group + band)
    }

    /// Rows of tiles of the shortest band.
    fn shortest(&self) -> usize {
        self.rows / (self.groups * self.per_group)
    }
}

impl WinogradConv {
    /// The bands to compute the layer in on `threads` threads, or `None` for the whole layer at
    /// once (see the module's documentation).
    pub(super) fn bands(&self, t: &Tiling, threads: usize) -> Option<Bands> {
        let g = &self.geometry;
        let xi_count = self.tile.positions();
        let per_tile = xi_count * (g.in_channels + g.out_channels);
        let (rows, width) = (t.tiles.h.max(1), t.tiles.w.max(1));
        // Most rows of tiles whose `V` and `M` fit in a band.
        let most_rows = (BAND_FLOATS / per_tile / width).clamp(1, rows);
        let fitting = Bands { groups: rows.div_ceil(most_rows), per_group: 1, rows };
        if per_tile * t.columns() > 2 * BAND_FLOATS
            && most_rows * width >= MIN_BAND_TILES
            && t.images * fitting.groups >= 2 * threads
        {
            return Some(fitting);
        }
        let kernel_floats = xi_count * g.out_channels * g.in_per_group();
        if threads < 2 || t.images != 1 || kernel_floats > MAX_OWNED_KERNEL_FLOATS {
            return None;
        }
        // A share per thread, in the fewest bands that each fit: on maps small enough for one or
        // two per thread (larger ones stay with the rule above, or whole).
        let per_group = rows.div_ceil(threads).div_ceil(most_rows);
        let owned = Bands { groups: threads, per_group, rows };
        (per_group <= 2 && threads * per_group <= rows && owned.shortest() * width >= MIN_OWNED_BAND_TILES)
            .then_some(owned)
    }

    /// The whole convolution band by band, each band on one thread from input transform to
    /// output: its `V` and `M` stay in that core's cache (per-thread buffers, grown once).
    pub(super) fn run_in_bands(&self, x: &[f32], t: &Tiling, bands: Bands, out: &mut [f32], activation: Activation) {
        let g = &self.geometry;
        let (cin, cout, xi_count, m_out) = (g.in_channels, g.out_channels, self.tile.positions(), self.tile.outputs());
        let (in_len, plane) = (cin * t.input.h * t.input.w, t.output.h * t.output.w);
        let out_ptr = SendPtr(out.as_mut_ptr());
        (0..t.images * bands.groups).into_par_iter().for_each(|job| {
            let (image, group) = (job / bands.groups, job % bands.groups);
            let x_image = &x[image * in_len..(image + 1) * in_len];
            for band in 0..bands.per_group {
                let rows = bands.band(group, band);
                let bt = Tiling { images: 1, tiles: Hw { h: rows.len(), w: t.tiles.w }, row_offset: rows.start, ..*t };
                let columns = bt.columns();
                scratch::with(Buffer::WinogradBands, |buffer| {
                    let need = xi_count * (cin + cout) * columns;
                    let (v, m) = scratch::lines(buffer, need).split_at_mut(xi_count * cin * columns);
                    for (c, v_c) in v.chunks_exact_mut(xi_count * columns).enumerate() {
                        self.transform_input(x_image, c, &bt, v_c);
                    }
                    self.multiply_sequential(v, m, columns);
                    let (row_start, row_end) = (m_out * rows.start, (m_out * rows.end).min(t.output.h));
                    for (o, m_o) in m.chunks_exact(xi_count * columns).enumerate() {
                        // SAFETY: output rows row_start..row_end of plane (image, o) lie inside
                        // `out` (sized by `run`); bands and planes partition the output, so no
                        // other job touches them.
                        let y = unsafe {
                            let start = (image * cout + o) * plane + row_start * t.output.w;
                            std::slice::from_raw_parts_mut(out_ptr.get().add(start), (row_end - row_start) * t.output.w)
                        };
                        self.transform_output(m_o, 0, &bt, columns, o, activation, y);
                    }
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvGeometry;
    use crate::kernels::{ConvOperands, Tile};
    use ndarray::Array4;

    #[test]
    fn bands_cover_the_rows_once_and_differ_by_at_most_one() {
        for rows in 1..20 {
            for groups in 1..=rows {
                for per_group in (1..=3).filter(|p| groups * p <= rows) {
                    let bands = Bands { groups, per_group, rows };
                    let cut: Vec<_> = (0..groups).flat_map(|g| (0..per_group).map(move |b| bands.band(g, b))).collect();
                    assert_eq!((cut[0].start, cut[cut.len() - 1].end), (0, rows));
                    assert!(cut.windows(2).all(|w| w[0].end == w[1].start));
                    let share = |g: usize| cut[g * per_group].start..cut[(g + 1) * per_group - 1].end;
                    let shares: Vec<_> = (0..groups).map(|g| share(g).len()).collect();
                    let sizes: Vec<_> = cut.iter().map(|r| r.len()).collect();
                    for lengths in [&shares, &sizes] {
                        assert!(lengths.iter().max().unwrap() - lengths.iter().min().unwrap() <= 1, "{lengths:?}");
                    }
                }
            }
        }
    }

    fn layer(channels: usize) -> WinogradConv {
        let g = ConvGeometry::new(channels, channels, 3).padding(1);
        let weight = Array4::zeros((channels, channels, 3, 3));
        WinogradConv::from_operands(&g, ConvOperands { weight: weight.view(), bias: None, pad_fill: None }, Tile::F4)
            .unwrap()
    }

    /// RepVGG-A0's stride-1 layers at batch 1: the 56² and 28² ones in bands of their own on two
    /// threads; the 28² one whole on three (bands of 14 tiles) and at batch 8; the 14² one whole
    /// (too few tiles, too large a kernel). On one thread, the 56² one by the large-map rule.
    #[test]
    fn bands_are_owned_by_threads_on_small_kernels_only() {
        let bands = |channels: usize, size: usize, images: usize, threads: usize| {
            let conv = layer(channels);
            let t = conv.tiling(images, Hw::square(size)).unwrap();
            conv.bands(&t, threads).map(|b| (b.groups, b.per_group))
        };
        assert_eq!(bands(48, 56, 1, 2), Some((2, 2)));
        assert_eq!(bands(96, 28, 1, 2), Some((2, 1)));
        assert_eq!(bands(96, 28, 1, 3), None);
        assert_eq!(bands(96, 28, 8, 2), None);
        assert_eq!(bands(192, 14, 1, 2), None);
        assert_eq!(bands(48, 56, 1, 1), Some((3, 1)));
        assert_eq!(bands(96, 28, 1, 1), None);
        // A large map: as many bands as fit while there are two per thread, then a multiple of
        // the threads; never more than two per thread of a map the large-map rule leaves whole.
        assert_eq!(bands(32, 112, 1, 1), Some((7, 1)));
        assert_eq!(bands(32, 112, 1, 2), Some((7, 1)));
        assert_eq!(bands(32, 112, 1, 4), Some((4, 2)));
        assert_eq!(bands(64, 112, 1, 2), None);
    }
}
