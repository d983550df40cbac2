//! YOLO detection outputs against the official YOLOv7 code: the head's decoding on its raw maps,
//! and non-maximum suppression on a synthetic prediction (same boxes, same order, same numbers).

mod common;

use common::relative_error;
use ndarray::{Array2, Array3, Array5};
use ndarray_npy::read_npy;
use rep::zoo::detect::{Anchors, NmsOptions, decode, non_max_suppression};
use std::path::PathBuf;

fn fixture(dir: &str, file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(file)
}

#[test]
fn decoding_matches_the_official_head() {
    let maps: Vec<Array5<f32>> = (3..=5)
        .map(|p| read_npy(fixture("yolov7_w125_nc2_64x64", &format!("expect_train_p{p}.npy"))).unwrap())
        .collect();
    let views: Vec<_> = maps.iter().map(|m| m.view()).collect();
    let z = decode(&views, &Anchors::yolov7()).unwrap();
    let expected: Array3<f32> = read_npy(fixture("yolov7_w125_nc2_64x64", "expect_train.npy")).unwrap();
    assert_eq!(z.dim(), expected.dim());
    let err = relative_error(&z, &expected);
    assert!(err <= 1e-6, "decoded z vs official: {err:e}");

    // A map of the wrong shape is an error naming it.
    let err = decode(&views[..2], &Anchors::yolov7()).unwrap_err();
    assert_eq!(err.to_string(), "invalid geometry: decode: 2 head maps for 3 anchor levels");
}

#[test]
fn suppression_keeps_the_official_boxes_in_the_official_order() {
    let prediction: Array3<f32> = read_npy(fixture("yolov7_nms_s9000", "pred.npy")).unwrap();
    let kept = non_max_suppression(prediction.view(), &NmsOptions::default()).unwrap();
    for (image, ours) in kept.iter().enumerate() {
        let expected: Array2<f32> = read_npy(fixture("yolov7_nms_s9000", &format!("expect_b{image}.npy"))).unwrap();
        assert_eq!(ours.dim(), expected.dim(), "image {image}: boxes kept");
        assert_eq!(ours.column(5), expected.column(5), "image {image}: classes in order");
        assert!(relative_error(ours, &expected) <= 1e-6, "image {image}");
    }
    // Class-agnostic suppression keeps fewer; a tighter limit keeps the most confident.
    let agnostic =
        non_max_suppression(prediction.view(), &NmsOptions { agnostic: true, ..Default::default() }).unwrap();
    assert!(agnostic[0].nrows() < kept[0].nrows());
    let few = non_max_suppression(prediction.view(), &NmsOptions { max_detections: 5, ..Default::default() }).unwrap();
    assert_eq!(few[1], kept[1].slice(ndarray::s![..5, ..]));
}

/// The official `letterbox(img, 640, stride=32)` on images of these sizes gives these input
/// sizes, scaled sizes and top/left padding (measured with the official code).
#[test]
fn letterbox_geometry_matches_the_official_code() {
    use rep::zoo::detect::Letterbox;
    for ((h, w), input, resized, top_left) in [
        ((333, 500), (448, 640), (426, 640), (11, 0)),
        ((500, 375), (640, 480), (640, 480), (0, 0)),
        ((480, 640), (480, 640), (480, 640), (0, 0)),
        ((17, 1000), (32, 640), (11, 640), (10, 0)),
        ((1080, 1920), (384, 640), (360, 640), (12, 0)),
        ((641, 639), (640, 640), (640, 638), (0, 1)),
    ] {
        let letterbox = Letterbox::new(h, w, 640, 32).unwrap();
        assert_eq!((letterbox.input, letterbox.resized, letterbox.top_left), (input, resized, top_left), "{h}x{w}");
    }
    // Boxes map back to the image as the official `scale_coords` maps them (its output here):
    // the padding removed, the scale divided out, clipped.
    let letterbox = Letterbox::new(333, 500, 640, 32).unwrap();
    let mut boxes = ndarray::array![[0.0f32, 11.0, 640.0, 437.0, 0.9, 1.0], [-5.0, 100.0, 64.0, 500.0, 0.5, 0.0]];
    letterbox.to_image(&mut boxes, 333, 500);
    let expected =
        ndarray::array![[0.0f32, 0.09374991, 500.0, 332.90625, 0.9, 1.0], [0.0, 69.625, 50.0, 333.0, 0.5, 0.0]];
    assert!(relative_error(&boxes, &expected) <= 1e-6, "{boxes}");
    assert!(Letterbox::new(0, 5, 640, 32).is_err());
}
