//! `onnx`: a RepVGG or YOLOv7 checkpoint (train-time or fused) as an ONNX model.
//!
//! ```text
//! cargo run --release -p rep-onnx --example onnx -- repvgg train.safetensors repvgg.onnx [SIZE [BATCH]]
//! cargo run --release -p rep-onnx --example onnx -- yolov7 yolov7.safetensors yolov7.onnx [SIZE]
//! ```
//!
//! `SIZE` is the square input size (224 for RepVGG and 640 for YOLOv7 when omitted), `BATCH`
//! RepVGG's batch (1 when omitted; YOLOv7 exports batch 1). RepVGG's architecture is inferred
//! from the checkpoint.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: onnx (repvgg|yolov7) INPUT OUTPUT [SIZE [BATCH]]";
    let (family, input, output) = match args.as_slice() {
        [family, input, output, ..] if args.len() <= 5 => (family.as_str(), Path::new(input), Path::new(output)),
        _ => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let mut numbers = Vec::new();
    for (name, arg) in ["SIZE", "BATCH"].into_iter().zip(&args[3..]) {
        match arg.parse::<usize>() {
            Ok(n) => numbers.push(n),
            Err(_) => {
                eprintln!("error: {name} must be a positive integer, found {arg}");
                return ExitCode::from(2);
            }
        }
    }
    let (size, batch) = (numbers.first().copied(), numbers.get(1).copied().unwrap_or(1));
    let result = match family {
        "repvgg" => rep_onnx::export_repvgg(input, output, None, size.unwrap_or(224), batch)
            .map(|a| format!("RepVGG {}, batch {batch}", a.name())),
        "yolov7" if batch != 1 => {
            eprintln!("error: YOLOv7 exports batch 1, found BATCH {batch}");
            return ExitCode::from(2);
        }
        "yolov7" => rep_onnx::export_yolov7(input, output, size.unwrap_or(640))
            .map(|c| format!("{}, width {}, {} classes", c.variant.name(), c.scaling.width, c.classes)),
        other => {
            eprintln!("error: unknown family {other}; {usage}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(what) => {
            println!("{} -> {} ({what})", input.display(), output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
