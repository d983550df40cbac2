//! Proc macros of `rep`. The block and model DSL (parse → check → expand) is being built; this
//! crate holds no runtime code.
