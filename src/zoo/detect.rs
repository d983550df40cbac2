//! YOLO detection outputs as the official YOLOv7 evaluation computes them: the detection head's
//! raw maps decoded into boxes ([`decode`], IDetect's eval forward), then non-maximum suppression
//! ([`non_max_suppression`], `utils.general.non_max_suppression`). Both in f32 in the official
//! order of operations, so that the kept boxes, their order and their numbers match.

use crate::layers::Activation;
use crate::ndarray::{Array2, Array3, ArrayView3, ArrayView5, Axis, s};
use crate::{Error, Result};

/// The anchors of each output level, in pixels (`(w, h)` per anchor), and the level's stride.
#[derive(Clone, Debug, PartialEq)]
pub struct Anchors {
    /// Per level: the stride (8, 16, 32) and its anchors.
    pub levels: Vec<(usize, Vec<(f32, f32)>)>,
}

impl Anchors {
    /// YOLOv7's default anchors (`cfg/training/yolov7.yaml`), three per level at strides 8, 16, 32.
    pub fn yolov7() -> Self {
        Anchors {
            levels: vec![
                (8, vec![(12.0, 16.0), (19.0, 36.0), (40.0, 28.0)]),
                (16, vec![(36.0, 75.0), (76.0, 55.0), (72.0, 146.0)]),
                (32, vec![(142.0, 110.0), (192.0, 243.0), (459.0, 401.0)]),
            ],
        }
    }

    /// YOLOv7-tiny's default anchors (`cfg/training/yolov7-tiny.yaml`).
    pub fn yolov7_tiny() -> Self {
        Anchors {
            levels: vec![
                (8, vec![(9.0, 6.0), (13.0, 16.0), (29.0, 11.0)]),
                (16, vec![(29.0, 28.0), (66.0, 26.0), (51.0, 62.0)]),
                (32, vec![(115.0, 54.0), (134.0, 119.0), (308.0, 147.0)]),
            ],
        }
    }
}

/// Decodes the head's raw maps — one per level, `[B, anchors, H, W, 5 + classes]` — into
/// `z` `[B, Σ anchors·H·W, 5 + classes]`, as IDetect's eval forward: every value through the
/// sigmoid `σ`, then `xy = (2σ − 0.5 + grid)·stride`, `wh = (2σ)²·anchor`; rows level by level,
/// anchor by anchor, row-major over the grid. `σ` is [`Activation::Sigmoid`]'s, vectorized
/// (within about an ulp of `1 / (1 + e⁻ˣ)`).
pub fn decode(maps: &[ArrayView5<'_, f32>], anchors: &Anchors) -> Result<Array3<f32>> {
    if maps.len() != anchors.levels.len() {
        return Err(Error::Geometry(format!(
            "decode: {} head maps for {} anchor levels",
            maps.len(),
            anchors.levels.len()
        )));
    }
    let first = maps.first().map(|m| m.shape().to_vec()).unwrap_or_default();
    let (batch, outputs) = (first.first().copied().unwrap_or(0), first.last().copied().unwrap_or(0));
    let mut rows = 0;
    for (map, (_, level)) in maps.iter().zip(&anchors.levels) {
        let [b, a, h, w, o] = map.shape().try_into().expect("5-D view");
        if b != batch || o != outputs || a != level.len() || o < 5 {
            return Err(Error::Shape {
                what: "detection head map [B, anchors, H, W, 5 + classes]".into(),
                expected: vec![batch, level.len(), h, w, outputs.max(5)],
                found: map.shape().to_vec(),
            });
        }
        rows += a * h * w;
    }
    // The raw values in `z`'s order (one bulk strided copy per image and anchor), every one
    // through the sigmoid in one vectorized pass, then the box columns of each row.
    let mut z = Array3::<f32>::zeros((batch, rows, outputs));
    let mut row = 0;
    for map in maps {
        let [_, a, h, w, _] = map.shape().try_into().expect("5-D view");
        for anchor in 0..a {
            for image in 0..batch {
                let dst = z.slice_mut(s![image, row..row + h * w, ..]);
                let mut dst = dst.into_shape_with_order((h, w, outputs)).expect("contiguous rows");
                dst.assign(&map.slice(s![image, anchor, .., .., ..]));
            }
            row += h * w;
        }
    }
    Activation::Sigmoid.apply_slice(z.as_slice_mut().expect("a fresh array is contiguous"));
    for mut image in z.outer_iter_mut() {
        let mut image_rows = image.outer_iter_mut();
        for (map, (stride, level)) in maps.iter().zip(&anchors.levels) {
            let [_, a, h, w, _] = map.shape().try_into().expect("5-D view");
            let stride = *stride as f32;
            for &(anchor_w, anchor_h) in level.iter().take(a) {
                for (y, x) in (0..h).flat_map(|y| (0..w).map(move |x| (y, x))) {
                    let mut out = image_rows.next().expect("rows counted above");
                    let sig: [f32; 4] = std::array::from_fn(|o| out[o]);
                    out[0] = (sig[0] * 2.0 - 0.5 + x as f32) * stride;
                    out[1] = (sig[1] * 2.0 - 0.5 + y as f32) * stride;
                    out[2] = (sig[2] * 2.0) * (sig[2] * 2.0) * anchor_w;
                    out[3] = (sig[3] * 2.0) * (sig[3] * 2.0) * anchor_h;
                }
            }
        }
    }
    Ok(z)
}

/// What [`non_max_suppression`] keeps, with the official defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NmsOptions {
    /// Least confidence (`objectness · class score`) kept, and least objectness considered (0.25).
    pub confidence: f32,
    /// IoU above which a lower-scored box of the same class is suppressed (0.45).
    pub iou: f32,
    /// Suppress across classes too (off).
    pub agnostic: bool,
    /// Most detections kept per image (300).
    pub max_detections: usize,
    /// Most candidates handed to the suppression, the most confident first (30 000).
    pub max_candidates: usize,
}

impl Default for NmsOptions {
    fn default() -> Self {
        NmsOptions { confidence: 0.25, iou: 0.45, agnostic: false, max_detections: 300, max_candidates: 30_000 }
    }
}

/// The official class offset: boxes of class `c` move by `c · 4096` pixels, so that boxes of
/// different classes never overlap in one suppression pass.
const CLASS_OFFSET: f32 = 4096.0;

/// Non-maximum suppression of decoded predictions `[B, N, 5 + classes]` (xywh, objectness,
/// class scores), one label per box, as the official `non_max_suppression`: candidates with
/// objectness above the threshold; confidence `objectness · score` of the best class, kept
/// above the threshold; boxes to corners; the most confident `max_candidates`; greedy
/// suppression in descending confidence of boxes whose IoU with a kept one of the same class
/// exceeds `iou`; at most `max_detections`. Per image: `[K, 6]` = x1, y1, x2, y2, confidence,
/// class, most confident first.
pub fn non_max_suppression(prediction: ArrayView3<'_, f32>, options: &NmsOptions) -> Result<Vec<Array2<f32>>> {
    let outputs = prediction.shape()[2];
    if outputs < 6 {
        let [b, n, _] = prediction.shape().try_into().expect("3-D view");
        return Err(Error::Shape {
            what: "predictions [B, N, 5 + classes]".into(),
            expected: vec![b, n, 6],
            found: prediction.shape().to_vec(),
        });
    }
    Ok(prediction.axis_iter(Axis(0)).map(|image| suppress(image, options)).collect())
}

/// One image's detections (see [`non_max_suppression`]).
fn suppress(image: crate::ndarray::ArrayView2<'_, f32>, options: &NmsOptions) -> Array2<f32> {
    let mut candidates: Vec<[f32; 6]> = image
        .outer_iter()
        .filter(|p| p[4] > options.confidence)
        .filter_map(|p| {
            // The first best class, as `max` over the class axis returns it.
            let (class, confidence) = p
                .iter()
                .skip(5)
                .map(|score| score * p[4])
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (c, v)| if v > best.1 { (c, v) } else { best });
            let (x, y, w, h) = (p[0], p[1], p[2], p[3]);
            let corners = [x - w / 2.0, y - h / 2.0, x + w / 2.0, y + h / 2.0];
            (confidence > options.confidence).then_some([
                corners[0],
                corners[1],
                corners[2],
                corners[3],
                confidence,
                class as f32,
            ])
        })
        .collect();
    // Most confident first (a stable sort: ties keep their order), at most `max_candidates`.
    candidates.sort_by(|a, b| b[4].total_cmp(&a[4]));
    candidates.truncate(options.max_candidates);
    // The suppression sees boxes offset by class; the detections keep their own coordinates.
    let offset = |d: &[f32; 6]| {
        let shift = if options.agnostic { 0.0 } else { d[5] * CLASS_OFFSET };
        [d[0] + shift, d[1] + shift, d[2] + shift, d[3] + shift]
    };
    let boxes: Vec<[f32; 4]> = candidates.iter().map(offset).collect();
    let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
    let mut suppressed = vec![false; candidates.len()];
    let mut kept = Vec::new();
    for (i, a) in boxes.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        kept.push(i);
        for (j, b) in boxes.iter().enumerate().skip(i + 1) {
            let inter = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0) * (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
            if inter / (area(a) + area(b) - inter) > options.iou {
                suppressed[j] = true;
            }
        }
    }
    kept.truncate(options.max_detections);
    Array2::from_shape_fn((kept.len(), 6), |(r, c)| candidates[kept[r]][c])
}

/// The official `letterbox` geometry (`utils/datasets.py`, as `detect.py` calls it): an image of
/// `height × width` is scaled by `r = min(size / height, size / width)` to
/// `round(width·r) × round(height·r)`, then padded with grey (114) to the next multiple of
/// `stride` on each axis, the padding split evenly between the two sides.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Letterbox {
    /// The scale factor `r`.
    pub scale: f64,
    /// The scaled image's size, before padding: `(height, width)`.
    pub resized: (usize, usize),
    /// Rows of padding above and columns on the left.
    pub top_left: (usize, usize),
    /// The network input's size: `(height, width)`, multiples of the stride.
    pub input: (usize, usize),
}

/// The grey the official `letterbox` pads with, as a fraction of 255.
pub const LETTERBOX_GREY: f32 = 114.0 / 255.0;

impl Letterbox {
    /// The geometry for an image of `height × width` at network size `size` and `stride` (32).
    pub fn new(height: usize, width: usize, size: usize, stride: usize) -> Result<Letterbox> {
        if height == 0 || width == 0 || size == 0 || stride == 0 || size > 1 << 15 {
            return Err(Error::Geometry(format!(
                "letterbox: image {height}x{width}, size {size} and stride {stride} must be positive (size at most 32768)"
            )));
        }
        let scale = (size as f64 / height as f64).min(size as f64 / width as f64);
        let resized =
            (((height as f64 * scale).round() as usize).max(1), ((width as f64 * scale).round() as usize).max(1));
        let pad = |resized: usize| (size.saturating_sub(resized)) % stride;
        let (pad_h, pad_w) = (pad(resized.0) as f64 / 2.0, pad(resized.1) as f64 / 2.0);
        // The official split: round(d − 0.1) before, round(d + 0.1) after.
        let split = |d: f64| ((d - 0.1).round() as usize, (d + 0.1).round() as usize);
        let ((top, bottom), (left, right)) = (split(pad_h), split(pad_w));
        Ok(Letterbox {
            scale,
            resized,
            top_left: (top, left),
            input: (resized.0 + top + bottom, resized.1 + left + right),
        })
    }

    /// Detections `[K, 6]` (x1, y1, x2, y2 in network-input pixels, …) mapped back to the
    /// original image and clipped to it, as the official `scale_coords`: the padding is
    /// subtracted and the scale divided out. The other columns are left as they are.
    pub fn to_image(&self, detections: &mut Array2<f32>, height: usize, width: usize) {
        let gain = self.scale as f32;
        let pad_x = (self.input.1 as f32 - width as f32 * gain) / 2.0;
        let pad_y = (self.input.0 as f32 - height as f32 * gain) / 2.0;
        for mut row in detections.rows_mut() {
            for (i, limit, pad) in [(0, width, pad_x), (1, height, pad_y), (2, width, pad_x), (3, height, pad_y)] {
                row[i] = ((row[i] - pad) / gain).clamp(0.0, limit as f32);
            }
        }
    }
}
