//! YOLOv7 and YOLOv7-tiny before their detection heads, declared with the graph DSL node for
//! node as the official `cfg/training/yolov7.yaml` and `yolov7-tiny.yaml` list them:
//! * field `nN` is node `N` (weights `N.*`, so `model.N.*` in [`super::Yolov7`]);
//! * sources are the yaml's `from`;
//! * `cN` is the base width `N` scaled: `make_divisible(N · width, 8)`
//!   ([`crate::zoo::yolo::Scaling::channels`]).
//!
//! Both hold [`Yolov7Layer`]s, so that one network type serves both variants. SPPCSPC
//! (`model.51`) is a graph of its own, held as one node.

use super::layers::{ConvBnLeaky, Sppcspc, Yolov7Layer};
use crate::zoo::yolo::{ConvBnSilu, RepConv};

/// YOLOv7 before its detection head (nodes 0 … 104); outputs P3, P4, P5 (nodes
/// 102 … 104, the three RepConvs IDetect reads).
#[crate::graph(
    new(c32: usize, c64: usize, c128: usize, c256: usize, c512: usize, c1024: usize),
    outputs(n102, n103, n104),
    layers = Yolov7Layer
)]
pub struct Yolov7Body {
    #[rep(rename = "0")]
    n0: ConvBnSilu<3, { c32 }, 3, 1>,
    #[rep(rename = "1")]
    n1: ConvBnSilu<{ c32 }, { c64 }, 3, 2>,
    #[rep(rename = "2")]
    n2: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "3")]
    n3: ConvBnSilu<{ c64 }, { c128 }, 3, 2>,
    #[rep(rename = "4")]
    n4: ConvBnSilu<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "5", from = -2)]
    n5: ConvBnSilu<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "6")]
    n6: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "7")]
    n7: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "8")]
    n8: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "9")]
    n9: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "10", from = (-1, -3, -5, -6))]
    n10: Concat,
    #[rep(rename = "11")]
    n11: ConvBnSilu<{ 4 * c64 }, { c256 }, 1, 1>,
    #[rep(rename = "12")]
    n12: MaxPool<2, 2>,
    #[rep(rename = "13")]
    n13: ConvBnSilu<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "14", from = -3)]
    n14: ConvBnSilu<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "15")]
    n15: ConvBnSilu<{ c128 }, { c128 }, 3, 2>,
    #[rep(rename = "16", from = (-1, -3))]
    n16: Concat,
    #[rep(rename = "17")]
    n17: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "18", from = -2)]
    n18: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "19")]
    n19: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "20")]
    n20: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "21")]
    n21: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "22")]
    n22: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "23", from = (-1, -3, -5, -6))]
    n23: Concat,
    #[rep(rename = "24")]
    n24: ConvBnSilu<{ 4 * c128 }, { c512 }, 1, 1>,
    #[rep(rename = "25")]
    n25: MaxPool<2, 2>,
    #[rep(rename = "26")]
    n26: ConvBnSilu<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "27", from = -3)]
    n27: ConvBnSilu<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "28")]
    n28: ConvBnSilu<{ c256 }, { c256 }, 3, 2>,
    #[rep(rename = "29", from = (-1, -3))]
    n29: Concat,
    #[rep(rename = "30")]
    n30: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "31", from = -2)]
    n31: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "32")]
    n32: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "33")]
    n33: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "34")]
    n34: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "35")]
    n35: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "36", from = (-1, -3, -5, -6))]
    n36: Concat,
    #[rep(rename = "37")]
    n37: ConvBnSilu<{ 4 * c256 }, { c1024 }, 1, 1>,
    #[rep(rename = "38")]
    n38: MaxPool<2, 2>,
    #[rep(rename = "39")]
    n39: ConvBnSilu<{ c1024 }, { c512 }, 1, 1>,
    #[rep(rename = "40", from = -3)]
    n40: ConvBnSilu<{ c1024 }, { c512 }, 1, 1>,
    #[rep(rename = "41")]
    n41: ConvBnSilu<{ c512 }, { c512 }, 3, 2>,
    #[rep(rename = "42", from = (-1, -3))]
    n42: Concat,
    #[rep(rename = "43")]
    n43: ConvBnSilu<{ 2 * c512 }, { c256 }, 1, 1>,
    #[rep(rename = "44", from = -2)]
    n44: ConvBnSilu<{ 2 * c512 }, { c256 }, 1, 1>,
    #[rep(rename = "45")]
    n45: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "46")]
    n46: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "47")]
    n47: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "48")]
    n48: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "49", from = (-1, -3, -5, -6))]
    n49: Concat,
    #[rep(rename = "50")]
    n50: ConvBnSilu<{ 4 * c256 }, { c1024 }, 1, 1>,
    #[rep(graph, rename = "51")]
    n51: Sppcspc<{ c1024 }, { c512 }>,
    #[rep(rename = "52")]
    n52: ConvBnSilu<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "53")]
    n53: Upsample<2>,
    #[rep(rename = "54", from = 37)]
    n54: ConvBnSilu<{ c1024 }, { c256 }, 1, 1>,
    #[rep(rename = "55", from = (-1, -2))]
    n55: Concat,
    #[rep(rename = "56")]
    n56: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "57", from = -2)]
    n57: ConvBnSilu<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "58")]
    n58: ConvBnSilu<{ c256 }, { c128 }, 3, 1>,
    #[rep(rename = "59")]
    n59: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "60")]
    n60: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "61")]
    n61: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "62", from = (-1, -2, -3, -4, -5, -6))]
    n62: Concat,
    #[rep(rename = "63")]
    n63: ConvBnSilu<{ 4 * c128 + 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "64")]
    n64: ConvBnSilu<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "65")]
    n65: Upsample<2>,
    #[rep(rename = "66", from = 24)]
    n66: ConvBnSilu<{ c512 }, { c128 }, 1, 1>,
    #[rep(rename = "67", from = (-1, -2))]
    n67: Concat,
    #[rep(rename = "68")]
    n68: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "69", from = -2)]
    n69: ConvBnSilu<{ 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "70")]
    n70: ConvBnSilu<{ c128 }, { c64 }, 3, 1>,
    #[rep(rename = "71")]
    n71: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "72")]
    n72: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "73")]
    n73: ConvBnSilu<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "74", from = (-1, -2, -3, -4, -5, -6))]
    n74: Concat,
    #[rep(rename = "75")]
    n75: ConvBnSilu<{ 4 * c64 + 2 * c128 }, { c128 }, 1, 1>,
    #[rep(rename = "76")]
    n76: MaxPool<2, 2>,
    #[rep(rename = "77")]
    n77: ConvBnSilu<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "78", from = -3)]
    n78: ConvBnSilu<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "79")]
    n79: ConvBnSilu<{ c128 }, { c128 }, 3, 2>,
    #[rep(rename = "80", from = (-1, -3, 63))]
    n80: Concat,
    #[rep(rename = "81")]
    n81: ConvBnSilu<{ 2 * c128 + c256 }, { c256 }, 1, 1>,
    #[rep(rename = "82", from = -2)]
    n82: ConvBnSilu<{ 2 * c128 + c256 }, { c256 }, 1, 1>,
    #[rep(rename = "83")]
    n83: ConvBnSilu<{ c256 }, { c128 }, 3, 1>,
    #[rep(rename = "84")]
    n84: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "85")]
    n85: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "86")]
    n86: ConvBnSilu<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "87", from = (-1, -2, -3, -4, -5, -6))]
    n87: Concat,
    #[rep(rename = "88")]
    n88: ConvBnSilu<{ 4 * c128 + 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "89")]
    n89: MaxPool<2, 2>,
    #[rep(rename = "90")]
    n90: ConvBnSilu<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "91", from = -3)]
    n91: ConvBnSilu<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "92")]
    n92: ConvBnSilu<{ c256 }, { c256 }, 3, 2>,
    #[rep(rename = "93", from = (-1, -3, 51))]
    n93: Concat,
    #[rep(rename = "94")]
    n94: ConvBnSilu<{ 2 * c256 + c512 }, { c512 }, 1, 1>,
    #[rep(rename = "95", from = -2)]
    n95: ConvBnSilu<{ 2 * c256 + c512 }, { c512 }, 1, 1>,
    #[rep(rename = "96")]
    n96: ConvBnSilu<{ c512 }, { c256 }, 3, 1>,
    #[rep(rename = "97")]
    n97: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "98")]
    n98: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "99")]
    n99: ConvBnSilu<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "100", from = (-1, -2, -3, -4, -5, -6))]
    n100: Concat,
    #[rep(rename = "101")]
    n101: ConvBnSilu<{ 4 * c256 + 2 * c512 }, { c512 }, 1, 1>,
    #[rep(rename = "102", from = 75)]
    n102: RepConv<{ c128 }, { c256 }, 1, 1>,
    #[rep(rename = "103", from = 88)]
    n103: RepConv<{ c256 }, { c512 }, 1, 1>,
    #[rep(rename = "104", from = 101)]
    n104: RepConv<{ c512 }, { c1024 }, 1, 1>,
}

/// YOLOv7-tiny before its detection head (nodes 0 … 76), LeakyReLU(0.1) throughout;
/// outputs P3, P4, P5 (nodes 74 … 76).
#[crate::graph(
    new(c32: usize, c64: usize, c128: usize, c256: usize, c512: usize),
    outputs(n74, n75, n76),
    layers = Yolov7Layer
)]
pub struct Yolov7TinyBody {
    #[rep(rename = "0")]
    n0: ConvBnLeaky<3, { c32 }, 3, 2>,
    #[rep(rename = "1")]
    n1: ConvBnLeaky<{ c32 }, { c64 }, 3, 2>,
    #[rep(rename = "2")]
    n2: ConvBnLeaky<{ c64 }, { c32 }, 1, 1>,
    #[rep(rename = "3", from = -2)]
    n3: ConvBnLeaky<{ c64 }, { c32 }, 1, 1>,
    #[rep(rename = "4")]
    n4: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "5")]
    n5: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "6", from = (-1, -2, -3, -4))]
    n6: Concat,
    #[rep(rename = "7")]
    n7: ConvBnLeaky<{ 4 * c32 }, { c64 }, 1, 1>,
    #[rep(rename = "8")]
    n8: MaxPool<2, 2, 0>,
    #[rep(rename = "9")]
    n9: ConvBnLeaky<{ c64 }, { c64 }, 1, 1>,
    #[rep(rename = "10", from = -2)]
    n10: ConvBnLeaky<{ c64 }, { c64 }, 1, 1>,
    #[rep(rename = "11")]
    n11: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "12")]
    n12: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "13", from = (-1, -2, -3, -4))]
    n13: Concat,
    #[rep(rename = "14")]
    n14: ConvBnLeaky<{ 4 * c64 }, { c128 }, 1, 1>,
    #[rep(rename = "15")]
    n15: MaxPool<2, 2, 0>,
    #[rep(rename = "16")]
    n16: ConvBnLeaky<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "17", from = -2)]
    n17: ConvBnLeaky<{ c128 }, { c128 }, 1, 1>,
    #[rep(rename = "18")]
    n18: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "19")]
    n19: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "20", from = (-1, -2, -3, -4))]
    n20: Concat,
    #[rep(rename = "21")]
    n21: ConvBnLeaky<{ 4 * c128 }, { c256 }, 1, 1>,
    #[rep(rename = "22")]
    n22: MaxPool<2, 2, 0>,
    #[rep(rename = "23")]
    n23: ConvBnLeaky<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "24", from = -2)]
    n24: ConvBnLeaky<{ c256 }, { c256 }, 1, 1>,
    #[rep(rename = "25")]
    n25: ConvBnLeaky<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "26")]
    n26: ConvBnLeaky<{ c256 }, { c256 }, 3, 1>,
    #[rep(rename = "27", from = (-1, -2, -3, -4))]
    n27: Concat,
    #[rep(rename = "28")]
    n28: ConvBnLeaky<{ 4 * c256 }, { c512 }, 1, 1>,
    #[rep(rename = "29")]
    n29: ConvBnLeaky<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "30", from = -2)]
    n30: ConvBnLeaky<{ c512 }, { c256 }, 1, 1>,
    #[rep(rename = "31")]
    n31: MaxPool<5, 1, 2>,
    #[rep(rename = "32", from = -2)]
    n32: MaxPool<9, 1, 4>,
    #[rep(rename = "33", from = -3)]
    n33: MaxPool<13, 1, 6>,
    #[rep(rename = "34", from = (-1, -2, -3, -4))]
    n34: Concat,
    #[rep(rename = "35")]
    n35: ConvBnLeaky<{ 4 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "36", from = (-1, -7))]
    n36: Concat,
    #[rep(rename = "37")]
    n37: ConvBnLeaky<{ 2 * c256 }, { c256 }, 1, 1>,
    #[rep(rename = "38")]
    n38: ConvBnLeaky<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "39")]
    n39: Upsample<2>,
    #[rep(rename = "40", from = 21)]
    n40: ConvBnLeaky<{ c256 }, { c128 }, 1, 1>,
    #[rep(rename = "41", from = (-1, -2))]
    n41: Concat,
    #[rep(rename = "42")]
    n42: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "43", from = -2)]
    n43: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "44")]
    n44: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "45")]
    n45: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "46", from = (-1, -2, -3, -4))]
    n46: Concat,
    #[rep(rename = "47")]
    n47: ConvBnLeaky<{ 4 * c64 }, { c128 }, 1, 1>,
    #[rep(rename = "48")]
    n48: ConvBnLeaky<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "49")]
    n49: Upsample<2>,
    #[rep(rename = "50", from = 14)]
    n50: ConvBnLeaky<{ c128 }, { c64 }, 1, 1>,
    #[rep(rename = "51", from = (-1, -2))]
    n51: Concat,
    #[rep(rename = "52")]
    n52: ConvBnLeaky<{ 2 * c64 }, { c32 }, 1, 1>,
    #[rep(rename = "53", from = -2)]
    n53: ConvBnLeaky<{ 2 * c64 }, { c32 }, 1, 1>,
    #[rep(rename = "54")]
    n54: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "55")]
    n55: ConvBnLeaky<{ c32 }, { c32 }, 3, 1>,
    #[rep(rename = "56", from = (-1, -2, -3, -4))]
    n56: Concat,
    #[rep(rename = "57")]
    n57: ConvBnLeaky<{ 4 * c32 }, { c64 }, 1, 1>,
    #[rep(rename = "58")]
    n58: ConvBnLeaky<{ c64 }, { c128 }, 3, 2>,
    #[rep(rename = "59", from = (-1, 47))]
    n59: Concat,
    #[rep(rename = "60")]
    n60: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "61", from = -2)]
    n61: ConvBnLeaky<{ 2 * c128 }, { c64 }, 1, 1>,
    #[rep(rename = "62")]
    n62: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "63")]
    n63: ConvBnLeaky<{ c64 }, { c64 }, 3, 1>,
    #[rep(rename = "64", from = (-1, -2, -3, -4))]
    n64: Concat,
    #[rep(rename = "65")]
    n65: ConvBnLeaky<{ 4 * c64 }, { c128 }, 1, 1>,
    #[rep(rename = "66")]
    n66: ConvBnLeaky<{ c128 }, { c256 }, 3, 2>,
    #[rep(rename = "67", from = (-1, 37))]
    n67: Concat,
    #[rep(rename = "68")]
    n68: ConvBnLeaky<{ 2 * c256 }, { c128 }, 1, 1>,
    #[rep(rename = "69", from = -2)]
    n69: ConvBnLeaky<{ 2 * c256 }, { c128 }, 1, 1>,
    #[rep(rename = "70")]
    n70: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "71")]
    n71: ConvBnLeaky<{ c128 }, { c128 }, 3, 1>,
    #[rep(rename = "72", from = (-1, -2, -3, -4))]
    n72: Concat,
    #[rep(rename = "73")]
    n73: ConvBnLeaky<{ 4 * c128 }, { c256 }, 1, 1>,
    #[rep(rename = "74", from = 57)]
    n74: ConvBnLeaky<{ c64 }, { c128 }, 3, 1>,
    #[rep(rename = "75", from = 65)]
    n75: ConvBnLeaky<{ c128 }, { c256 }, 3, 1>,
    #[rep(rename = "76", from = 73)]
    n76: ConvBnLeaky<{ c256 }, { c512 }, 3, 1>,
}
