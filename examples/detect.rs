//! `detect`: YOLOv7 object detection on one image, as the official `detect.py` does it —
//! letterbox, the fused network, decoding, non-maximum suppression, boxes mapped back to the
//! image and drawn on it.
//!
//! ```text
//! cargo run --release --example detect -- --weights yolov7.safetensors --image in.jpg --out out.png \
//!     [--size 640 --conf 0.25 --iou 0.45]
//! ```
//!
//! The weights are a YOLOv7 or YOLOv7-tiny checkpoint in either form (see `rep::zoo::yolov7`'s
//! `checkpoint` module for the three lines of PyTorch that write one from an official `.pt`).
//! Images are read and written with the `image` crate; its bilinear resize stands in for
//! OpenCV's, so pixel values may differ slightly from the official pipeline's.

#[macro_use]
#[path = "support/say.rs"]
mod say;

use clap::Parser;
use image::{Rgb, RgbImage, imageops};
use rep::ndarray::{Array2, Array4};
use rep::plan::KernelChoice;
use rep::zoo::detect::{LETTERBOX_GREY, Letterbox, NmsOptions, non_max_suppression};
use rep::zoo::yolov7::checkpoint;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "detect", about = "YOLOv7 object detection on one image")]
struct Cli {
    /// YOLOv7 checkpoint (safetensors, train-time or fused, the official names).
    #[arg(long)]
    weights: PathBuf,
    /// The image to detect objects in (JPEG or PNG).
    #[arg(long)]
    image: PathBuf,
    /// Where to write the image with the boxes drawn (its extension picks the format).
    #[arg(long)]
    out: PathBuf,
    /// Network input size (the longer side, before padding to a multiple of 32).
    #[arg(long, default_value_t = 640, value_parser = clap::value_parser!(u32).range(32..=4096))]
    size: u32,
    /// Least confidence (objectness · class score) kept.
    #[arg(long, default_value_t = 0.25)]
    conf: f32,
    /// IoU above which a less confident box of the same class is suppressed.
    #[arg(long, default_value_t = 0.45)]
    iou: f32,
}

type CliResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// The letterboxed network input `[1, 3, H, W]`, RGB in [0, 1], grey padding.
fn network_input(image: &RgbImage, letterbox: &Letterbox) -> Array4<f32> {
    let (h, w) = letterbox.resized;
    let resized = imageops::resize(image, w as u32, h as u32, imageops::FilterType::Triangle);
    let (top, left) = letterbox.top_left;
    let mut x = Array4::from_elem((1, 3, letterbox.input.0, letterbox.input.1), LETTERBOX_GREY);
    for (col, row, pixel) in resized.enumerate_pixels() {
        for channel in 0..3 {
            x[[0, channel, top + row as usize, left + col as usize]] = pixel[channel] as f32 / 255.0;
        }
    }
    x
}

/// Draws each detection's box, coloured by class, as thick as the official `plot_one_box` draws it.
fn draw(image: &mut RgbImage, detections: &Array2<f32>) {
    const PALETTE: [[u8; 3]; 8] = [
        [255, 56, 56],
        [255, 157, 151],
        [255, 112, 31],
        [255, 178, 29],
        [207, 210, 49],
        [72, 249, 10],
        [26, 147, 52],
        [0, 194, 255],
    ];
    let (width, height) = image.dimensions();
    let thickness = ((0.002 * (width + height) as f32 / 2.0).round() as u32 + 1).max(1);
    for det in detections.rows() {
        let colour = Rgb(PALETTE[det[5] as usize % PALETTE.len()]);
        let [x1, y1, x2, y2] = [det[0], det[1], det[2], det[3]].map(|v| v.round().max(0.0) as u32);
        let (x2, y2) = (x2.min(width.saturating_sub(1)), y2.min(height.saturating_sub(1)));
        for t in 0..thickness {
            for x in x1..=x2 {
                for y in [y1.saturating_add(t), y2.saturating_sub(t)] {
                    if y < height {
                        image.put_pixel(x, y, colour);
                    }
                }
            }
            for y in y1..=y2 {
                for x in [x1.saturating_add(t), x2.saturating_sub(t)] {
                    if x < width {
                        image.put_pixel(x, y, colour);
                    }
                }
            }
        }
    }
}

fn run(cli: Cli) -> CliResult {
    rep::io::ensure_distinct(&cli.out, &[&cli.image, &cli.weights])?;
    let format = image::ImageFormat::from_path(&cli.out)
        .map_err(|e| format!("{}: cannot tell the image format from the extension ({e})", cli.out.display()))?;
    let network = checkpoint::load(&cli.weights)?.into_deploy()?;
    let mut image = image::open(&cli.image).map_err(|e| format!("{}: {e}", cli.image.display()))?.to_rgb8();
    let (width, height) = (image.width() as usize, image.height() as usize);
    let letterbox = Letterbox::new(height, width, cli.size as usize, 32)?;
    let x = network_input(&image, &letterbox);
    let plan = network.plan(x.dim().into(), KernelChoice::Auto)?;
    let z = network.forward_planned(&plan, &mut plan.state()?, x.view())?;
    let options = NmsOptions { confidence: cli.conf, iou: cli.iou, ..NmsOptions::default() };
    let mut detections = non_max_suppression(z.view(), &options)?.remove(0);
    letterbox.to_image(&mut detections, height, width);
    say!("{} detections ({}x{} input)", detections.nrows(), letterbox.input.1, letterbox.input.0);
    for det in detections.rows() {
        say!("class {} {:.3} [{:.1}, {:.1}, {:.1}, {:.1}]", det[5], det[4], det[0], det[1], det[2], det[3]);
    }
    draw(&mut image, &detections);
    rep::io::write_atomic(&cli.out, |w| image.write_to(w, format).map_err(std::io::Error::other))?;
    say!("{} -> {}", cli.image.display(), cli.out.display());
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
