//! The families of the literature, declared with the DSL under their authors' weight names,
//! with adapters for the checkpoints their code writes: each loads an original train-time or
//! deploy checkpoint without renaming by hand, and exports under the original names.
//!
//! * [`repvgg`] — RepVGG A0–B3g4 and D2se (official code and timm namings), architecture inference;
//! * [`orepa`] — OREPA's block (online training) and the official checkpoint layout;
//! * [`yolo`] — YOLOv7's RepConv, RepConvN and implicit head, EMA;
//! * [`yolov7`] — YOLOv7 and YOLOv7-tiny as graphs, official checkpoints (train and fused);
//! * [`detect`] — YOLO detection outputs: the head's decoding and non-maximum suppression;
//! * [`dbb`] — the Diverse Branch Block in every variant its code builds;
//! * [`acnet`] — ACNet's asymmetric-convolution block;
//! * [`mobileone`] — Apple's MobileOne block.
//!
//! [`adapter`] gives the block families one checkpoint shape, [`checkpoint`] the networks.

pub mod acnet;
pub mod adapter;
pub mod checkpoint;
pub mod dbb;
pub mod detect;
pub mod mobileone;
pub mod orepa;
pub mod repvgg;
pub mod yolo;
pub mod yolov7;
