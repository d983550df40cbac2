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
