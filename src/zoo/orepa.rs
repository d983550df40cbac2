//! OREPA (online convolutional re-parameterization): every branch linear — no BN inside a
//! branch, a learned per-channel scaling vector on each — and one BN after the sum ("block
//! linearization"). While training, `forward_train` squeezes all branch weights into one kernel
//! and runs a single convolution ("block squeezing"); `forward_train_structural` runs every
//! branch, for comparison. `fuse` folds the final BN too.
//!
//! The linear deep stem (stacked 3×3 convs) merges into one larger kernel exactly only when no
//! stage pads and all but the last have stride 1: with padding, the intermediate map's zero
//! border is not what the merged conv computes there, so such a merge is refused
//! ([`crate::fusion::AffineConv::then`]).
//!
//! Checkpoints of the official implementation (`weight_orepa_origin`, …, `vector` `[6, C_out]`,
//! `bn.*`; deploy `orepa_reparam.*`) convert with [`from_official`] and [`to_official`].

use crate::io::StateDict;
use crate::ndarray::{ArrayD, Axis};
use crate::{Error, Result};

/// Declares OREPA's block with the given post-sum ops (the branches are the same).
macro_rules! orepa_block {
    ($(#[$doc:meta])* $name:ident: $($post:ident),+) => {
        $(#[$doc])*
        #[crate::block(post($($post),+), fused = "orepa_reparam")]
        pub struct $name<Cin, Cout, K, S, G, T> {
            origin: (Conv<Cin, Cout, K, S, Groups<G>>, Scale<Cout, Init<0.25>>),
            avg: (Conv<Cin, Cout, 1, 1, Groups<G>>, AvgPool<Cout, K, S>, Scale<Cout, Init<0.25>>),
            prior: (Conv<Cin, Cout, 1, 1, Groups<G>>, DctPrior<Cout, K, S>, Scale<Cout, Init<0.0>>),
            one_kxk: (
                Conv<Cin, T, 1, 1, Groups<G>, IdentityInit<true>>,
                Conv<T, Cout, K, S, Groups<G>>,
                Scale<Cout, Init<0.5>>,
            ),
            pointwise: (Conv<Cin, Cout, 1, S, Groups<G>>, Scale<Cout, Init<1.0>>),
            dw_separable: (
                Conv<Cin, { Cin * 8 }, K, S, Groups<Cin>>,
                Conv<{ Cin * 8 }, Cout, 1, 1, Groups<G>>,
                Scale<Cout, Init<0.5>>,
            ),
        }
    };
}

orepa_block!(
    /// OREPA's block: origin k×k, 1×1 → avg-pool, 1×1 → DCT frequency prior, identity-initialized
    /// 1×1 → k×k, 1×1, and depthwise k×k (×8 channels) → pointwise 1×1, each scaled per channel
    /// (initial scales 0.25, 0.25, 0, 0.5, 1, 0.5 as the official code), summed, then BN — and no
    /// activation, the official default (`nonlinear=None`); [`OrepaRelu`] adds ReLU.
    /// `T` is the 1×1 → k×k branch's internal width (the official default: `C_in` when
    /// `groups ≤ 4`, else `2·C_in`; see [`internal_channels`]).
    Orepa: bn
);

orepa_block!(
    /// [`Orepa`] followed by ReLU (the official block built with `nonlinear=nn.ReLU()`, as its
    /// ResNets use it).
    OrepaRelu: bn, relu
);

impl Orepa<usize, usize, usize, usize, usize, usize> {
    /// Builds the block an official train-time checkpoint holds (a single `OREPA` module's state
    /// dict, the official names) and loads it: channels, kernel, groups and the 1×1 → k×k
    /// branch's width are read from the shapes (`weight_orepa_gconv_dw` is `[8·C_in, 1, k, k]`);
    /// the stride is not in the weights.
    pub fn from_state_dict(state: &StateDict, stride: usize) -> Result<Self> {
        let shape = |name: &str| -> Result<Vec<usize>> {
            let shape = state.tensors.get(name).map(|t| t.shape().to_vec()).ok_or_else(|| {
                Error::Checkpoint(format!("not an OREPA train-time checkpoint in the official naming: no `{name}`"))
            })?;
            if shape.len() != 4 || shape.contains(&0) {
                return Err(Error::Checkpoint(format!("{name} has shape {shape:?}; expected a 4-D kernel")));
            }
            Ok(shape)
        };
        let (origin, dw, idconv) =
            (shape("weight_orepa_origin")?, shape("weight_orepa_gconv_dw")?, shape("weight_orepa_1x1_kxk_idconv1")?);
        let (cout, cin_g, k, cin, internal) = (origin[0], origin[1], origin[2], dw[0] / 8, idconv[0]);
        if origin[3] != k || dw[0] % 8 != 0 || cin % cin_g != 0 {
            return Err(Error::Checkpoint(format!(
                "OREPA block: origin kernel {origin:?} and depthwise kernel {dw:?} describe no block"
            )));
        }
        let mut rng = <crate::rand::rngs::StdRng as crate::rand::SeedableRng>::seed_from_u64(0);
        let mut block = Orepa::new(cin, cout, k, stride, cin / cin_g, internal, &mut rng)?;
        from_official(state.clone())?.load_into(&mut block)?;
        Ok(block)
    }
}

/// The official default width of the 1×1 → k×k branch: `C_in` when `groups ≤ 4`, else `2·C_in`.
pub fn internal_channels(in_channels: usize, groups: usize) -> usize {
    if groups <= 4 { in_channels } else { 2 * in_channels }
}

/// Official tensor name ↔ ours, for the plain tensors.
const TENSORS: &[(&str, &str)] = &[
    ("weight_orepa_origin", "origin.0.weight"),
    ("weight_orepa_avg_conv", "avg.0.weight"),
    ("weight_orepa_pfir_conv", "prior.0.weight"),
    ("weight_orepa_1x1", "pointwise.0.weight"),
    ("weight_orepa_1x1_kxk_idconv1", "one_kxk.0.weight"),
    ("weight_orepa_1x1_kxk_conv2", "one_kxk.1.weight"),
    ("weight_orepa_gconv_dw", "dw_separable.0.weight"),
    ("weight_orepa_gconv_pw", "dw_separable.1.weight"),
];

/// Rows of the official `vector` `[6, C_out]`, in order, and our scaling layers.
const VECTOR_ROWS: [&str; 6] = [
    "origin.1.weight",
    "avg.2.weight",
    "prior.2.weight",
    "one_kxk.2.weight",
    "pointwise.1.weight",
    "dw_separable.2.weight",
];

/// Constant buffers the official module saves; they carry no learned numbers.
const BUFFERS: [&str; 3] = ["weight_orepa_avg_avg", "weight_orepa_prior", "id_tensor"];

fn join(prefix: &str, name: &str) -> String {
    crate::layers::join(prefix, name)
}

/// The block prefixes of a state dict: every key ending in `suffix`, with it removed.
fn prefixes(state: &StateDict, suffix: &str) -> Vec<String> {
    state
        .tensors
        .keys()
        .filter_map(|k| {
            if k == suffix { Some(String::new()) } else { k.strip_suffix(&format!(".{suffix}")).map(str::to_owned) }
        })
        .collect()
}

/// The grouped identity `id[t, t mod (C_in/g)] = 1` of the official `id_tensor`, shaped like
/// `like` (a `[T, C_in/g, 1, 1]` kernel).
fn identity_like(key: &str, like: &ArrayD<f32>) -> Result<ArrayD<f32>> {
    if like.ndim() != 4 || like.shape()[1] == 0 {
        return Err(Error::Shape { what: key.to_owned(), expected: vec![0, 0, 1, 1], found: like.shape().to_vec() });
    }
    let cin_g = like.shape()[1];
    Ok(ArrayD::from_shape_fn(like.raw_dim(), |index| if index[1] == index[0] % cin_g { 1.0 } else { 0.0 }))
}

fn take(state: &mut StateDict, key: &str) -> Result<ArrayD<f32>> {
    state.tensors.remove(key).ok_or_else(|| Error::Checkpoint(format!("OREPA checkpoint: missing `{key}`")))
}

/// Renames an official OREPA state dict (train form) to this crate's names: the `vector` rows
/// become the branches' scaling layers, the identity is added back into the 1×1 → k×k branch's
/// first conv, the constant buffers are dropped. Other keys (and deploy `orepa_reparam.*`)
/// pass through.
pub fn from_official(mut state: StateDict) -> Result<StateDict> {
    for prefix in prefixes(&state, "weight_orepa_origin") {
        for (official, ours) in TENSORS {
            let mut tensor = take(&mut state, &join(&prefix, official))?;
            if *official == "weight_orepa_1x1_kxk_idconv1" {
                tensor = &tensor + &identity_like(official, &tensor)?;
            }
            state.tensors.insert(join(&prefix, ours), tensor);
        }
        let vector = take(&mut state, &join(&prefix, "vector"))?;
        if vector.ndim() != 2 || vector.shape()[0] != VECTOR_ROWS.len() {
            return Err(Error::Shape {
                what: join(&prefix, "vector"),
                expected: vec![VECTOR_ROWS.len(), 0],
                found: vector.shape().to_vec(),
            });
        }
        for (row, ours) in vector.axis_iter(Axis(0)).zip(VECTOR_ROWS) {
            state.tensors.insert(join(&prefix, ours), row.to_owned());
        }
        for buffer in BUFFERS {
            state.tensors.remove(&join(&prefix, buffer));
        }
    }
    Ok(state)
}

/// The inverse of [`from_official`] (the constant buffers are not written back; the official
/// module recreates them, so load with `strict=False` or add them there).
pub fn to_official(mut state: StateDict) -> Result<StateDict> {
    for prefix in prefixes(&state, "origin.0.weight") {
        for (official, ours) in TENSORS {
            let mut tensor = take(&mut state, &join(&prefix, ours))?;
            if *official == "weight_orepa_1x1_kxk_idconv1" {
                tensor = &tensor - &identity_like(ours, &tensor)?;
            }
            state.tensors.insert(join(&prefix, official), tensor);
        }
        let rows = VECTOR_ROWS.iter().map(|ours| take(&mut state, &join(&prefix, ours))).collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = rows.iter().map(|r| r.view().insert_axis(Axis(0))).collect();
        let vector = crate::ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Checkpoint(e.to_string()))?;
        state.tensors.insert(join(&prefix, "vector"), vector);
    }
    Ok(state)
}
