//! Parsing and checking, shared by the macros: `ast` (the IR, parsed from the struct), `attrs`
//! (attributes passed through), `geo`
//! (geometry expressions), `check` (shape rules) and `ctxt` (the error collector).

pub mod ast;
pub mod attrs;
pub mod check;
pub mod ctxt;
#[cfg(test)]
mod fuzz;
pub mod geo;
pub mod model;
