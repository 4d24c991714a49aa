//! # netdsl
//!
//! Neural networks written once, declaratively, in the [`network!`] macro.
//! Every tensor's shape is inferred and checked at compile time — a wrong
//! channel count, a kernel that does not fit, a shape assertion that does not
//! hold is a compile error at the layer that is wrong, with the arithmetic
//! and a fix. The macro generates one plain Rust struct per network that runs
//! on [candle](https://github.com/huggingface/candle) (CPU; CUDA with the
//! `cuda` feature), with PyTorch-compatible parameter names.
//!
//! ```
//! use netdsl::network;
//! use netdsl::candle::{DType, Device, Tensor};
//!
//! network! {
//!     /// LeNet-5 (LeCun et al., 1998) for 28x28 digits.
//!     pub LeNet(x: [B, 1, 28, 28]) -> [B, 10] {
//!         x -> conv1: Conv2d(1 -> 6, kernel = 5, padding = 2) -> relu -> max_pool(2)
//!           -> conv2: Conv2d(16, kernel = 5) -> relu -> max_pool(2)  : [B, 16, 5, 5]
//!           -> flatten
//!           -> fc1: Linear(400 -> 120) -> relu
//!           -> fc2: Linear(84) -> relu
//!           -> fc3: Linear(10)
//!     }
//! }
//!
//! # fn main() -> netdsl::Result<()> {
//! let net = LeNet::new_seeded(0, &Device::Cpu)?;
//! let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
//! assert_eq!(net.forward(&x)?.dims(), &[2, 10]);
//! assert_eq!(LeNet::PARAMETERS, 61_706);
//! # Ok(())
//! # }
//! ```
//!
//! With the default `pictures` feature, [`pictures`] draws training curves
//! and captioned image sheets as PNG (text in a bundled font, no system
//! libraries), and [`data::Photo`] loads the bundled test photographs.
//!
//! See `docs/guide.md` for a tour, `docs/reference.md` for every op and its
//! shape rule, and `docs/errors.md` for every compile error.

extern crate self as netdsl;

pub mod data;
#[cfg(feature = "expand")]
pub mod expand;
#[cfg(feature = "models")]
pub mod models;
#[cfg(feature = "pictures")]
pub mod pictures;

pub use netdsl_macros::network;
pub use netdsl_runtime::layers;
pub use netdsl_runtime::{candle, candle_nn};
pub use netdsl_runtime::{
    check_input, BlockCx, Error, Init, InputDim, ParamSource, ParamSpec, Result, WeightProblem,
    WeightsError,
};
/// Resizing a ViT's learned position embedding to another image size, as
/// torchvision's `interpolate_embeddings`.
pub use netdsl_runtime::{interpolate_embeddings, interpolate_pos_embedding};
pub use netdsl_runtime::{keep_freed_memory, silence_debug_build_warning};
pub use netdsl_runtime::{load_checkpoint, save_checkpoint, train, Checkpoint, Rng};
pub use netdsl_runtime::{
    rnn, rnn_cached, Cell, Generator, RnnCache, RnnInputs, RnnOutput, RnnSpec,
};
pub use netdsl_runtime::{FileProblem, LoadOptions, LoadReport, LoadedWeights, SaveOptions};

/// What generated code refers to. Not a public API: paths here may change
/// in any release.
#[doc(hidden)]
pub mod __private {
    pub use netdsl_runtime::candle::Var;
    pub use netdsl_runtime::candle::{DType, Device, Tensor};
    pub use netdsl_runtime::drop_path;
    pub use netdsl_runtime::{
        activate, adaptive_avg_pool2d, adaptive_max_pool2d, avg_pool2d, batch_norm, bn_fold,
        candle_nn, check_input, check_weights, dropout, hardswish, layers, linear, linear_prepared,
        load_weights, make_var, max_pool2d, param, prepare_linear_params, relu6, save_weights,
        take, var_of, Error, Fusion, Generator, Init, Initializer, InputDim, LoadedWeights,
        ParamSource, ParamSpec, Pool2d, Result,
    };
    pub use netdsl_runtime::{
        adaptive_avg_pool1d, adaptive_max_pool1d, avg_pool1d, check_token_input, conv1d, embedding,
        max_pool1d, reverse, Conv1dSpec, Pool1d,
    };
    pub use netdsl_runtime::{
        add_sinusoidal, attention_mask, attention_mask_ref, key_padding_mask, layer_norm,
        multi_head_attention, patch_embed, prepend_token, rms_norm, Mask, MhaCache, MhaSpec,
    };
    pub use netdsl_runtime::{
        center_crop, concat, conv2d, conv2d_prepared, conv_transpose2d, merge_binary,
        pixel_shuffle, prepare_conv, prepare_folded, prepare_params, run_on_pool,
        upsample_bilinear2d, upsample_nearest2d, Conv2dSpec, ConvTranspose2dSpec, Epilogue,
        MergeOp, PreparedConv,
    };
    pub use netdsl_runtime::{
        check_same_size, rnn, rnn_cached, Cell, RnnCache, RnnInputs, RnnSpec,
    };
    pub use netdsl_runtime::{
        filter2d, gradient_magnitude, median2d, Border, FilterSpec, Lowering, Taps,
    };
    pub use netdsl_runtime::{missing_child, next_param, scaled_size, BlockCx};
    pub use netdsl_runtime::{summary_at, SummaryRow, SummarySpec};
}
